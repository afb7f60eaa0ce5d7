//! Accounts' subgraph: the `User` entity's profile fields, `me`, `user(id)`, `updateProfile`.

use crate::domain::{Accounts, ProfileChange, PublicUser};
use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::{Context, EmptySubscription, ID, InputObject, Object, Result, Schema, SimpleObject};
use flick_kit::config::GraphqlConfig;
use flick_kit::graphql::CostCheck;
use flick_kit::graphql::caller;
use std::collections::HashMap;

pub type AccountsSchema = Schema<Query, Mutation, EmptySubscription>;

/// The schema; `accounts` is `None` only to print the SDL offline.
pub fn schema(cfg: &GraphqlConfig, check: CostCheck, accounts: Option<Accounts>) -> AccountsSchema {
    let mut builder = flick_kit::graphql::configure(Schema::build(Query, Mutation, EmptySubscription), cfg, check);
    if let Some(a) = accounts {
        // The router resolves a page's owners in one `_entities` call: one query for all.
        builder = builder.data(flick_kit::graphql::loader(UserLoader(a.clone()))).data(a);
    }
    builder.finish()
}

/// Batches user lookups of one moment into one `IN` query.
pub struct UserLoader(Accounts);

impl Loader<String> for UserLoader {
    type Value = PublicUser;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[String]) -> Result<HashMap<String, PublicUser>, Self::Error> {
        let users = self.0.users(keys).await?;
        Ok(users.into_iter().map(|u| (u.id.clone(), u)).collect())
    }
}

/// A Flick user.
#[derive(SimpleObject, Clone)]
#[graphql(complex)]
pub struct User {
    pub id: ID,
    pub username: String,
    // Media serves it too, under `Video.owner` (`@provides`), from its user directory.
    #[graphql(shareable)]
    pub display_name: String,
    pub avatar_url: Option<String>,
    pub bio: String,
    #[graphql(skip)]
    email: Option<String>,
}

#[async_graphql::ComplexObject]
impl User {
    /// Only visible to the user themselves.
    async fn email(&self, ctx: &Context<'_>) -> Option<String> {
        let me = caller(ctx).user_id.map(|u| u.to_string());
        (me.as_deref() == Some(self.id.as_str())).then(|| self.email.clone()).flatten()
    }
}

impl From<PublicUser> for User {
    fn from(u: PublicUser) -> Self {
        Self {
            id: ID(u.id),
            username: u.username,
            display_name: u.display_name,
            avatar_url: u.avatar_url,
            bio: String::new(),
            email: None,
        }
    }
}

impl From<crate::domain::User> for User {
    fn from(u: crate::domain::User) -> Self {
        Self {
            id: ID(u.id),
            username: u.username,
            display_name: u.display_name,
            avatar_url: u.avatar_url,
            bio: u.bio,
            email: u.email,
        }
    }
}

fn accounts<'a>(ctx: &'a Context<'_>) -> &'a Accounts {
    ctx.data_unchecked::<Accounts>()
}

pub struct Query;

#[Object]
impl Query {
    /// The calling user, or null when anonymous.
    async fn me(&self, ctx: &Context<'_>) -> Result<Option<User>> {
        let Some(id) = caller(ctx).user_id else { return Ok(None) };
        match accounts(ctx).profile(&id.to_string()).await {
            Ok(user) => Ok(Some(user.into())),
            Err(e) if e.code() == flick_kit::ErrorCode::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn user(&self, ctx: &Context<'_>, id: ID) -> Result<Option<User>> {
        Ok(accounts(ctx).user(&id).await?.map(User::from))
    }

    #[graphql(entity)]
    async fn find_user_by_id(&self, ctx: &Context<'_>, id: ID) -> Result<Option<User>> {
        Ok(ctx.data_unchecked::<DataLoader<UserLoader>>().load_one(id.0).await?.map(User::from))
    }
}

#[derive(InputObject)]
pub struct ProfileInput {
    pub display_name: Option<String>,
    pub bio: Option<String>,
    /// An empty string clears the avatar.
    pub avatar_url: Option<String>,
}

pub struct Mutation;

#[Object]
impl Mutation {
    /// Changes the caller's profile (password changes go through REST with the current one).
    async fn update_profile(&self, ctx: &Context<'_>, input: ProfileInput) -> Result<User> {
        let me = caller(ctx).require_user()?;
        let change = ProfileChange {
            display_name: input.display_name,
            bio: input.bio,
            avatar_url: input.avatar_url.map(|u| Some(u).filter(|u| !u.trim().is_empty())),
            ..Default::default()
        };
        Ok(accounts(ctx).update_profile(&me.to_string(), None, change).await?.into())
    }
}
