//! The Security gRPC service: who am I, password users (create, delete, list) and ACLs
//! (create, delete, describe).
//!
//! Changing users or ACLs takes ALTER on the cluster, seeing them DESCRIBE (Kafka's rule) under
//! `--authorizer acl`, and a super user without it. Changes are written to the audit log
//! (`strata::audit`) with the principal that made them.

use std::sync::Arc;

use strata_proto::v1::security_server::Security as SecurityApi;
use strata_proto::v1::{
    CreateAclsRequest, CreateAclsResponse, CreateUserRequest, CreateUserResponse,
    DeleteAclsRequest, DeleteAclsResponse, DeleteUserRequest, DeleteUserResponse,
    DescribeAclsRequest, DescribeAclsResponse, ListUsersRequest, ListUsersResponse,
    UserDescription, WhoAmIRequest, WhoAmIResponse,
};
use tonic::{Request, Response, Status};

use super::acl::{Operation, ResourceType, CLUSTER_NAME};
use super::principal::{AuthenticatedBy, Caller, Principal};
use super::{acls, audit, users};
use crate::error::BrokerError;
use crate::state::BrokerState;

pub struct SecurityService {
    pub state: Arc<BrokerState>,
}

static ANONYMOUS: Principal = Principal::Anonymous;

/// The principal the authentication layer found, borrowed (anonymous when the layer did not
/// run): what every authorization check reads, without a copy.
pub fn principal_of<T>(request: &Request<T>) -> &Principal {
    request
        .extensions()
        .get::<Caller>()
        .map_or(&ANONYMOUS, |c| &c.principal)
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
    /// Only a super user may create or delete a user whose name is a super user's (ALTER on
    /// the cluster must not be a way to become one).
    fn guard_super_user_name(&self, caller: &Caller, name: &str) -> Result<(), Status> {
        let security = &self.state.security;
        if security.is_super_user(&Principal::User(name.to_string()))
            && !security.is_super_user(&caller.principal)
        {
            return Err(BrokerError::ClusterAuthorizationFailed(format!(
                "{} may not create or delete user {name:?}: it is a super user, and only a super user may",
                caller.principal
            ))
            .into());
        }
        Ok(())
    }

    /// `operation` on the cluster under the ACL authorizer; a super user without it.
    fn require(&self, caller: &Caller, operation: Operation, what: &str) -> Result<(), Status> {
        let security = &self.state.security;
        if security.config.acl_authorizer {
            return security
                .authorize(
                    &caller.principal,
                    operation,
                    ResourceType::Cluster,
                    CLUSTER_NAME,
                )
                .map_err(|e| {
                    tracing::warn!(target: "strata::audit", principal = %caller.principal, action = what, "refused by the ACLs");
                    e.into()
                });
        }
        if security.is_super_user(&caller.principal) {
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
        self.require(&caller, Operation::Alter, "create users")?;
        self.guard_super_user_name(&caller, &r.name)?;
        let store = self.state.metadata.store();
        users::create(store.as_ref(), &r.name, &r.password, false).await?;
        self.state.security.users.reload(store.as_ref()).await?;
        audit::changed(
            &caller.principal,
            "user created",
            &format!("user {}", r.name),
            "",
        );
        Ok(Response::new(CreateUserResponse {}))
    }

    async fn delete_user(
        &self,
        request: Request<DeleteUserRequest>,
    ) -> Result<Response<DeleteUserResponse>, Status> {
        let caller = caller(&request);
        let r = request.into_inner();
        self.require(&caller, Operation::Alter, "delete users")?;
        self.guard_super_user_name(&caller, &r.name)?;
        let store = self.state.metadata.store();
        users::delete(store.as_ref(), &r.name).await?;
        self.state.security.users.reload(store.as_ref()).await?;
        audit::changed(
            &caller.principal,
            "user deleted",
            &format!("user {}", r.name),
            "",
        );
        Ok(Response::new(DeleteUserResponse {}))
    }

    async fn list_users(
        &self,
        request: Request<ListUsersRequest>,
    ) -> Result<Response<ListUsersResponse>, Status> {
        let caller = caller(&request);
        self.require(&caller, Operation::Describe, "list users")?;
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

    async fn create_acls(
        &self,
        request: Request<CreateAclsRequest>,
    ) -> Result<Response<CreateAclsResponse>, Status> {
        let caller = caller(&request);
        self.require(&caller, Operation::Alter, "create ACLs")?;
        let entries = acls::from_bindings(&request.into_inner().acls)?;
        let store = self.state.metadata.store();
        let created = acls::add(store.as_ref(), &entries).await?;
        self.state.security.acls.reload(store.as_ref()).await?;
        for e in &entries {
            audit::changed(&caller.principal, "ACL added", &e.describe(), "");
        }
        Ok(Response::new(CreateAclsResponse { created }))
    }

    async fn delete_acls(
        &self,
        request: Request<DeleteAclsRequest>,
    ) -> Result<Response<DeleteAclsResponse>, Status> {
        let caller = caller(&request);
        self.require(&caller, Operation::Alter, "delete ACLs")?;
        let entries = acls::from_bindings(&request.into_inner().acls)?;
        let store = self.state.metadata.store();
        let deleted = acls::remove(store.as_ref(), &entries).await?;
        self.state.security.acls.reload(store.as_ref()).await?;
        for e in &entries {
            audit::changed(&caller.principal, "ACL removed", &e.describe(), "");
        }
        Ok(Response::new(DeleteAclsResponse { deleted }))
    }

    async fn describe_acls(
        &self,
        request: Request<DescribeAclsRequest>,
    ) -> Result<Response<DescribeAclsResponse>, Status> {
        let caller = caller(&request);
        self.require(&caller, Operation::Describe, "list ACLs")?;
        let principal = request.into_inner().principal;
        let store = self.state.metadata.store();
        let security = &self.state.security;
        security.acls.reload(store.as_ref()).await?;
        let acls = security
            .acls
            .all()
            .iter()
            .filter(|e| principal.is_empty() || e.principal == principal)
            .map(acls::to_binding)
            .collect();
        Ok(Response::new(DescribeAclsResponse { acls }))
    }
}
