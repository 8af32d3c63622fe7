//! The scenarios `tandem-local` runs against a fresh cluster, printing what
//! happened: a transfer across two databases, and an order on one database
//! with its stock decrement on another (once with enough stock, once
//! without).

use anyhow::{Result, bail, ensure};
use tandem_client::{Client, Outcome, Statement, Value};

/// Runs the demo on participants `bank_a`, `bank_b` (accounts) and `shop`,
/// `warehouse` (orders, stock); the four names may repeat databases.
pub struct Demo<'a> {
    pub client: Client,
    pub bank_a: &'a str,
    pub bank_b: &'a str,
    pub shop: &'a str,
    pub warehouse: &'a str,
}

impl Demo<'_> {
    pub async fn run(&mut self) -> Result<()> {
        self.seed().await?;
        self.transfer().await?;
        self.order(2, true).await?;
        self.order(5, false).await?;
        Ok(())
    }

    async fn seed(&mut self) -> Result<()> {
        let seeded = self
            .client
            .submit(vec![
                (
                    self.bank_a,
                    vec![Statement::new(
                        "INSERT INTO accounts (id, owner, balance) VALUES (1, 'alice', 100)",
                    )],
                ),
                (
                    self.bank_b,
                    vec![Statement::new(
                        "INSERT INTO accounts (id, owner, balance) VALUES (2, 'bob', 50)",
                    )],
                ),
                (
                    self.warehouse,
                    vec![Statement::new("INSERT INTO stock (sku, qty) VALUES ('apple', 3)")],
                ),
            ])
            .await?;
        ensure!(
            seeded.outcome() == Outcome::Committed,
            "seeding failed: {}",
            seeded.reason
        );
        println!(
            "seeded: alice has 100 on {}, bob has 50 on {}, {} has 3 apples  [{}]",
            self.bank_a, self.bank_b, self.warehouse, seeded.txn_id
        );
        Ok(())
    }

    async fn transfer(&mut self) -> Result<()> {
        println!(
            "\n1. transfer 30 from alice ({}) to bob ({}), one atomic Submit:",
            self.bank_a, self.bank_b
        );
        let done = self
            .client
            .submit(vec![
                (
                    self.bank_a,
                    vec![
                        Statement::new("UPDATE accounts SET balance = balance - ? WHERE id = ? AND balance >= ?")
                            .bind(30)
                            .bind(1)
                            .bind(30)
                            .expect_rows_affected(1),
                    ],
                ),
                (
                    self.bank_b,
                    vec![
                        Statement::new("UPDATE accounts SET balance = balance + ? WHERE id = ?")
                            .bind(30)
                            .bind(2)
                            .expect_rows_affected(1),
                    ],
                ),
            ])
            .await?;
        println!("   {} -> {:?}", done.txn_id, done.outcome());
        let alice = self.balance(self.bank_a, 1).await?;
        let bob = self.balance(self.bank_b, 2).await?;
        println!("   alice now has {alice}, bob has {bob} (total still {})", alice + bob);
        ensure!(alice == 70 && bob == 80, "unexpected balances {alice} / {bob}");
        Ok(())
    }

    async fn order(&mut self, qty: i64, expect_commit: bool) -> Result<()> {
        println!(
            "\n{}. order {qty} apples: INSERT on {} + guarded stock decrement on {}:",
            if expect_commit { 2 } else { 3 },
            self.shop,
            self.warehouse
        );
        let done = self
            .client
            .submit(vec![
                (
                    self.warehouse,
                    vec![
                        Statement::new("UPDATE stock SET qty = qty - ? WHERE sku = ? AND qty >= ?")
                            .bind(qty)
                            .bind("apple")
                            .bind(qty)
                            .expect_rows_affected(1),
                    ],
                ),
                (
                    self.shop,
                    vec![
                        Statement::new(
                            "INSERT INTO orders (sku, qty, customer, total, placed_at) VALUES (?, ?, ?, ?, NOW())",
                        )
                        .bind("apple")
                        .bind(qty)
                        .bind("carol")
                        .bind(Value::decimal(format!("{}.50", qty * 2))),
                    ],
                ),
            ])
            .await?;
        let reason = if done.reason.is_empty() {
            String::new()
        } else {
            format!(": {}", done.reason)
        };
        println!("   {} -> {:?}{reason}", done.txn_id, done.outcome());
        let stock = self
            .scalar(self.warehouse, "SELECT qty FROM stock WHERE sku = 'apple'")
            .await?;
        let orders = self.scalar(self.shop, "SELECT COUNT(*) FROM orders").await?;
        println!("   stock is now {stock}, orders placed: {orders}");
        match (done.outcome(), expect_commit) {
            (Outcome::Committed, true) | (Outcome::Aborted, false) => Ok(()),
            (outcome, _) => bail!("order of {qty} ended {outcome:?}"),
        }
    }

    async fn balance(&mut self, participant: &str, id: i64) -> Result<i64> {
        self.scalar(participant, &format!("SELECT balance FROM accounts WHERE id = {id}"))
            .await
    }

    /// Reads one integer through tandem (a read-only transaction).
    async fn scalar(&mut self, participant: &str, sql: &str) -> Result<i64> {
        let done = self
            .client
            .submit(vec![(participant, vec![Statement::new(sql)])])
            .await?;
        let value = done
            .results
            .first()
            .and_then(|b| b.results.first())
            .and_then(|r| r.rows.first())
            .and_then(|row| row.values.first())
            .and_then(Value::as_i64);
        value.ok_or_else(|| anyhow::anyhow!("{sql} on {participant} returned nothing"))
    }
}
