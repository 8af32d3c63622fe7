//! A participant's MySQL sessions over TCP, as across hosts.
//!
//! The statement cliff: past 100 distinct statement texts on one branch
//! session, each new one stalled about 40 ms. sqlx keeps 100 prepared
//! statements per connection and, when it evicts one, writes
//! `COM_STMT_CLOSE` (which MySQL never answers) and then the next command
//! right behind it. Without `TCP_NODELAY`, Nagle's algorithm holds that
//! command until the server acknowledges the close, and the server delays
//! its ACK by 40 ms. sqlx 0.9.0 stopped setting `TCP_NODELAY`; 0.9.1 sets
//! it again. This test counts, it does not time: the evictions happened,
//! and every socket the participant holds to its MariaDB has `TCP_NODELAY`
//! (read from the participant process itself through `pidfd_getfd`).

use tandem_client::Statement;
use tandem_integration_tests::cluster::{Cluster, ClusterConfig, Target};
use tandem_integration_tests::process::tcp_nodelay_of_sockets_to;

/// More distinct texts than sqlx's per-connection statement cache (100).
const DISTINCT: i64 = 150;

async fn global_status(pool: &sqlx::MySqlPool, name: &str) -> i64 {
    let value: String =
        sqlx::query_scalar("SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = ?")
            .bind(name)
            .fetch_one(pool)
            .await
            .unwrap();
    value.parse().unwrap()
}

#[tokio::test]
async fn a_branch_past_the_statement_cache_writes_to_mysql_without_nagle() {
    let cluster = Cluster::start(ClusterConfig {
        participants: vec!["alpha".into()],
        mysql_over_tcp: true,
        ..ClusterConfig::default()
    })
    .await
    .expect("cluster starts");
    let node = cluster.node("alpha");
    let port = node.db.tcp_port().expect("alpha's MariaDB listens on TCP");
    assert!(node.db.url().contains("127.0.0.1"), "{}", node.db.url());
    let mut client = cluster.client().await.unwrap();

    let closed_before = global_status(node.pool(), "Com_stmt_close").await;
    let txn = client.begin().await.unwrap();
    for i in 0..DISTINCT {
        let results = client
            .execute(
                &txn,
                "alpha",
                vec![Statement::new(format!("SELECT ? + {i}")).bind(1_i64)],
            )
            .await
            .unwrap();
        let value = results[0].rows[0].values[0].as_i64();
        assert_eq!(value, Some(1 + i), "statement {i}");
    }
    client.commit(&txn).await.unwrap();
    // The branch's session went past the cache: sqlx closed the statements
    // it evicted, each a close the server does not answer.
    let closed = global_status(node.pool(), "Com_stmt_close").await - closed_before;
    assert!(
        closed >= DISTINCT - 100,
        "{closed} statements closed: the branch never went past the statement cache"
    );

    let pid = cluster
        .pid(&Target::Participant("alpha".into()))
        .expect("participant runs");
    let sockets = tcp_nodelay_of_sockets_to(pid, port);
    assert!(
        !sockets.is_empty(),
        "the participant holds no TCP session to its MariaDB"
    );
    let delayed: Vec<i32> = sockets.iter().filter(|(_, on)| !on).map(|(fd, _)| *fd).collect();
    assert!(
        delayed.is_empty(),
        "the participant's MySQL sockets (fds {delayed:?} of {sockets:?}) lack TCP_NODELAY: \
         each command written behind an unanswered COM_STMT_CLOSE waits for a delayed ACK"
    );
}
