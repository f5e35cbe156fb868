//! Runs the conformance suite against both backends: each case once on the in-memory store
//! and once on PostgreSQL, in a fresh database of its own (`#[sqlx::test]`, from `DATABASE_URL`).

mod memory {
    use std::sync::Arc;
    use visitor_store::MemoryStore;

    visitor_store::conformance_tests!(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn () => Arc::new(MemoryStore::new())
    );
}

#[cfg(feature = "postgres")]
mod postgres {
    use sqlx::PgPool;
    use std::sync::Arc;
    use visitor_store::PgStore;

    visitor_store::conformance_tests!(
        #[sqlx::test(migrations = false)]
        async fn (pool: PgPool) => Arc::new(PgStore::from_pool(&pool))
    );
}
