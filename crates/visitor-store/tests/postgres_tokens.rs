//! Tokens kept in PostgreSQL (contract §8.6): created by digest, listed without it, revoked for
//! good; and the pool's status as the metrics read it.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sqlx::PgPool;
use visitor_store::{
    Operations, PgStore, PgStoreOptions, PoolStatus, Role, StoreError, TokenDigest, TokenStore,
};

fn store(pool: &PgPool) -> PgStore {
    PgStore::from_pool(pool)
}

fn digest(n: u8) -> TokenDigest {
    [n; 32]
}

#[sqlx::test(migrations = false)]
async fn a_created_token_is_active_until_it_is_revoked(pool: PgPool) {
    let store = store(&pool);
    assert!(store.active_tokens().await.unwrap().is_empty());

    let admin = store
        .create_token(Role::Administrator, Some("deploy bot"), &digest(1))
        .await
        .unwrap();
    let agent = store
        .create_token(Role::Agent, None, &digest(2))
        .await
        .unwrap();
    assert_eq!(admin.role, Role::Administrator);
    assert_eq!(admin.name.as_deref(), Some("deploy bot"));
    assert_eq!(admin.revoked, None);
    assert_eq!(agent.name, None);
    assert!(agent.id > admin.id);

    let mut active = store.active_tokens().await.unwrap();
    active.sort_by_key(|token| token.digest);
    assert_eq!(active.len(), 2);
    assert_eq!(
        (active[0].role, active[0].digest),
        (Role::Administrator, digest(1))
    );
    assert_eq!((active[1].role, active[1].digest), (Role::Agent, digest(2)));

    let revoked = store.revoke_token(admin.id).await.unwrap();
    let when = revoked.revoked.expect("revoked now");
    let active = store.active_tokens().await.unwrap();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].digest, digest(2));

    // Revoking again keeps the first time; the row stays listed.
    let again = store.revoke_token(admin.id).await.unwrap();
    assert_eq!(again.revoked, Some(when));
    let listed = store.list_tokens().await.unwrap();
    assert_eq!(listed, vec![again, agent]);
}

#[sqlx::test(migrations = false)]
async fn a_digest_is_stored_once_and_unknown_ids_are_not_found(pool: PgPool) {
    let store = store(&pool);
    store
        .create_token(Role::Agent, None, &digest(7))
        .await
        .unwrap();
    assert!(matches!(
        store
            .create_token(Role::Administrator, None, &digest(7))
            .await,
        Err(StoreError::Conflict)
    ));
    assert!(matches!(
        store.revoke_token(999).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.create_token(Role::Agent, Some(""), &digest(8)).await,
        Err(StoreError::Internal(_))
    ));
    assert_eq!(store.list_tokens().await.unwrap().len(), 1);
}

#[sqlx::test(migrations = false)]
async fn the_pool_status_counts_connections_open_and_idle(pool: PgPool) {
    let options = PgStoreOptions {
        max_connections: 3,
        ..PgStoreOptions::default()
    };
    let store = PgStore::with_options((*pool.connect_options()).clone(), &options);
    // Lazy: nothing is open yet.
    assert_eq!(
        store.pool_status(),
        Some(PoolStatus {
            used: 0,
            idle: 0,
            max: 3
        })
    );
    // A call is over once it returns: its connection waits in the pool.
    store.ping().await.unwrap();
    assert_eq!(
        store.pool_status(),
        Some(PoolStatus {
            used: 0,
            idle: 1,
            max: 3
        })
    );
    store.close().await;
    assert_eq!(
        store.pool_status(),
        Some(PoolStatus {
            used: 0,
            idle: 0,
            max: 3
        })
    );
}
