//! Principals, users and ACLs: `whoami`, password-user administration and ACL entries (the
//! Security service).

use strata_proto::security_client::SecurityClient;
use strata_proto::{
    AclBinding, CreateAclsRequest, CreateUserRequest, DeleteAclsRequest, DeleteUserRequest,
    DescribeAclsRequest, ListUsersRequest, UserDescription, WhoAmIRequest, WhoAmIResponse,
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

impl Admin {
    /// Adds ACL entries (ALTER on the cluster); returns how many were new.
    pub async fn create_acls(&self, acls: Vec<AclBinding>) -> Result<u32> {
        let request = CreateAclsRequest { acls };
        self.call_on(SecurityClient::new, |mut c| {
            let r = request.clone();
            async move { c.create_acls(r).await }
        })
        .await
        .map(|r| r.created)
    }

    /// Removes ACL entries (ALTER on the cluster); returns how many existed.
    pub async fn delete_acls(&self, acls: Vec<AclBinding>) -> Result<u32> {
        let request = DeleteAclsRequest { acls };
        self.call_on(SecurityClient::new, |mut c| {
            let r = request.clone();
            async move { c.delete_acls(r).await }
        })
        .await
        .map(|r| r.deleted)
    }

    /// The ACL entries, or one principal's (`User:NAME`).
    pub async fn describe_acls(&self, principal: Option<&str>) -> Result<Vec<AclBinding>> {
        let request = DescribeAclsRequest {
            principal: principal.unwrap_or_default().to_string(),
        };
        self.call_on(SecurityClient::new, |mut c| {
            let r = request.clone();
            async move { c.describe_acls(r).await }
        })
        .await
        .map(|r| r.acls)
    }
}
