//! gRPC `flick.accounts.v1.AccountsService`.

use crate::domain::{Accounts, PublicUser};
use flick_kit::AppError;
use flick_proto::accounts::v1 as pb;
use tonic::{Request, Response, Status};

pub struct AccountsGrpc(pub Accounts);

fn to_pb(u: PublicUser) -> pb::User {
    pb::User { id: u.id, username: u.username, display_name: u.display_name, avatar_url: u.avatar_url }
}

#[tonic::async_trait]
impl pb::accounts_service_server::AccountsService for AccountsGrpc {
    async fn verify_token(
        &self,
        request: Request<pb::VerifyTokenRequest>,
    ) -> Result<Response<pb::VerifyTokenResponse>, Status> {
        let verified = self.0.verify(&request.into_inner().access_token).await?;
        Ok(Response::new(pb::VerifyTokenResponse {
            revocation_keys: verified.revocation_keys(),
            expires_at_ms: verified.claims.exp * 1000,
            user_id: verified.user_id,
            role: verified.role,
        }))
    }

    async fn verification_keys(
        &self,
        _request: Request<pb::VerificationKeysRequest>,
    ) -> Result<Response<pb::VerificationKeysResponse>, Status> {
        let (keys, ttl) = self.0.verifying_keys();
        Ok(Response::new(pb::VerificationKeysResponse {
            keys: keys
                .kids()
                .map(|(kid, key)| pb::VerificationKey { kid: kid.clone(), ed25519_public_key: key.as_bytes().to_vec() })
                .collect(),
            access_token_ttl_ms: ttl.as_millis() as i64,
        }))
    }

    async fn get_user(&self, request: Request<pb::GetUserRequest>) -> Result<Response<pb::User>, Status> {
        let user = self.0.user(&request.into_inner().id).await?.ok_or_else(|| AppError::not_found("no such user"))?;
        Ok(Response::new(to_pb(user)))
    }

    async fn get_users(&self, request: Request<pb::GetUsersRequest>) -> Result<Response<pb::GetUsersResponse>, Status> {
        let users = self.0.users(&request.into_inner().ids).await?;
        Ok(Response::new(pb::GetUsersResponse { users: users.into_iter().map(to_pb).collect() }))
    }
}
