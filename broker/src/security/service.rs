//! The Security gRPC service: who am I, and password users (create, delete, list).
//!
//! User changes need a super user while authentication is on (Kafka: ALTER on the cluster),
//! and are written to the audit log (`strata::audit`) with the principal that made them.

use std::sync::Arc;

use strata_proto::v1::security_server::Security as SecurityApi;
use strata_proto::v1::{
    CreateUserRequest, CreateUserResponse, DeleteUserRequest, DeleteUserResponse, ListUsersRequest,
    ListUsersResponse, UserDescription, WhoAmIRequest, WhoAmIResponse,
};
use tonic::{Request, Response, Status};

use super::principal::{AuthenticatedBy, Caller, Principal};
use super::users;
use crate::error::BrokerError;
use crate::state::BrokerState;

pub struct SecurityService {
    pub state: Arc<BrokerState>,
}

/// The caller the authentication layer found (anonymous when the layer did not run).
pub fn caller<T>(request: &Request<T>) -> Caller {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .unwrap_or(Caller {
            principal: Principal::Anonymous,
            by: AuthenticatedBy::None,
            tls: false,
        })
}

impl SecurityService {
    fn require_super_user(&self, caller: &Caller, what: &str) -> Result<(), Status> {
        if self.state.security.is_super_user(&caller.principal) {
            return Ok(());
        }
        tracing::warn!(target: "strata::audit", principal = %caller.principal, action = what, "refused: not a super user");
        Err(BrokerError::ClusterAuthorizationFailed(format!(
            "{} may not {what}: that takes a super user (--super-user, or the bootstrap admin)",
            caller.principal
        ))
        .into())
    }
}

#[tonic::async_trait]
impl SecurityApi for SecurityService {
    async fn who_am_i(
        &self,
        request: Request<WhoAmIRequest>,
    ) -> Result<Response<WhoAmIResponse>, Status> {
        let caller = caller(&request);
        Ok(Response::new(WhoAmIResponse {
            principal: caller.principal.to_string(),
            authenticated_by: caller.by.as_str().to_string(),
            super_user: self.state.security.is_super_user(&caller.principal),
            tls: caller.tls,
        }))
    }

    async fn create_user(
        &self,
        request: Request<CreateUserRequest>,
    ) -> Result<Response<CreateUserResponse>, Status> {
        let caller = caller(&request);
        let r = request.into_inner();
        self.require_super_user(&caller, "create users")?;
        let store = self.state.metadata.store();
        users::create(store.as_ref(), &r.name, &r.password, false).await?;
        self.state.security.users.reload(store.as_ref()).await?;
        tracing::info!(target: "strata::audit", principal = %caller.principal, user = r.name, "user created");
        Ok(Response::new(CreateUserResponse {}))
    }

    async fn delete_user(
        &self,
        request: Request<DeleteUserRequest>,
    ) -> Result<Response<DeleteUserResponse>, Status> {
        let caller = caller(&request);
        let r = request.into_inner();
        self.require_super_user(&caller, "delete users")?;
        let store = self.state.metadata.store();
        users::delete(store.as_ref(), &r.name).await?;
        self.state.security.users.reload(store.as_ref()).await?;
        tracing::info!(target: "strata::audit", principal = %caller.principal, user = r.name, "user deleted");
        Ok(Response::new(DeleteUserResponse {}))
    }

    async fn list_users(
        &self,
        request: Request<ListUsersRequest>,
    ) -> Result<Response<ListUsersResponse>, Status> {
        let caller = caller(&request);
        self.require_super_user(&caller, "list users")?;
        let store = self.state.metadata.store();
        self.state.security.users.reload(store.as_ref()).await?;
        let users = self
            .state
            .security
            .users
            .all()
            .iter()
            .map(|(name, (record, _))| UserDescription {
                name: name.clone(),
                super_user: record.super_user
                    || self
                        .state
                        .security
                        .is_super_user(&Principal::User(name.clone())),
                mechanism: super::passwords::mechanism(),
            })
            .collect();
        Ok(Response::new(ListUsersResponse { users }))
    }
}
