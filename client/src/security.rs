//! Principals and users: `whoami` and password-user administration (the Security service).

use strata_proto::security_client::SecurityClient;
use strata_proto::{
    CreateUserRequest, DeleteUserRequest, ListUsersRequest, UserDescription, WhoAmIRequest,
    WhoAmIResponse,
};

use crate::admin::Admin;
use crate::error::Result;

impl Admin {
    /// Who the broker takes this client to be.
    pub async fn whoami(&self) -> Result<WhoAmIResponse> {
        self.call_on(SecurityClient::new, |mut c| async move {
            c.who_am_i(WhoAmIRequest {}).await
        })
        .await
    }

    /// Creates a password user (super users only).
    pub async fn create_user(&self, name: &str, password: &str) -> Result<()> {
        let request = CreateUserRequest {
            name: name.to_string(),
            password: password.to_string(),
        };
        self.call_on(SecurityClient::new, |mut c| {
            let r = request.clone();
            async move { c.create_user(r).await }
        })
        .await
        .map(|_| ())
    }

    pub async fn delete_user(&self, name: &str) -> Result<()> {
        let request = DeleteUserRequest {
            name: name.to_string(),
        };
        self.call_on(SecurityClient::new, |mut c| {
            let r = request.clone();
            async move { c.delete_user(r).await }
        })
        .await
        .map(|_| ())
    }

    pub async fn list_users(&self) -> Result<Vec<UserDescription>> {
        self.call_on(SecurityClient::new, |mut c| async move {
            c.list_users(ListUsersRequest {}).await
        })
        .await
        .map(|r| r.users)
    }
}
