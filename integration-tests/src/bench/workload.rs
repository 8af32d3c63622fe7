//! The benchmark's workloads, as data: each transaction is a list of
//! branches (a participant and its statements), generated the same way
//! whichever system runs it, so tandem and the baselines do the same work.

use std::fmt;

use clap::ValueEnum;
use rand::Rng;
use rand::rngs::StdRng;
use serde::Serialize;

/// The tables every benchmarked database gets (`bench_` so they stay out
/// of the way of an attached cluster's own tables).
pub const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS bench_accounts (
        id BIGINT PRIMARY KEY,
        balance BIGINT NOT NULL
    ) ENGINE=InnoDB",
    "CREATE TABLE IF NOT EXISTS bench_stock (
        sku BIGINT PRIMARY KEY,
        qty BIGINT NOT NULL
    ) ENGINE=InnoDB",
    "CREATE TABLE IF NOT EXISTS bench_orders (
        id BIGINT AUTO_INCREMENT PRIMARY KEY,
        sku BIGINT NOT NULL,
        qty BIGINT NOT NULL,
        customer BIGINT NOT NULL
    ) ENGINE=InnoDB",
    // B1d's durable decision rows (on the first database only).
    "CREATE TABLE IF NOT EXISTS bench_decisions (
        gtrid VARBINARY(64) PRIMARY KEY
    ) ENGINE=InnoDB",
];

/// Starting balance of every account and stock of every product: large
/// enough that no run drains one.
pub const START_BALANCE: i64 = 1_000_000_000;

/// Accounts one audit reads on each participant.
pub const AUDIT_WINDOW: u64 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// Move money from an account on one participant to one on another.
    Transfer,
    /// Move money from one account to two others, on three participants.
    Transfer3,
    /// INSERT an order on one participant, guarded stock decrement on
    /// another.
    Order,
    /// A transfer between two accounts of the same participant.
    Single,
    /// SERIALIZABLE read of a window of accounts on every participant.
    Audit,
}

impl Workload {
    pub const ALL: [Workload; 5] = [
        Workload::Transfer,
        Workload::Transfer3,
        Workload::Order,
        Workload::Single,
        Workload::Audit,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Workload::Transfer => "transfer",
            Workload::Transfer3 => "transfer3",
            Workload::Order => "order",
            Workload::Single => "single",
            Workload::Audit => "audit",
        }
    }

    /// Fewest participants the workload needs.
    pub fn participants(self) -> usize {
        match self {
            Workload::Transfer | Workload::Order => 2,
            Workload::Transfer3 => 3,
            Workload::Single | Workload::Audit => 1,
        }
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One parameter value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    Int(i64),
}

/// One statement: SQL with `?` placeholders, its parameters, and the rows
/// it must affect (a guard: otherwise the transaction aborts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    pub sql: &'static str,
    pub params: Vec<Param>,
    pub expect_affected: Option<u64>,
}

/// One participant's part of a transaction, by index into the cluster's
/// participants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Branch {
    pub participant: usize,
    pub ops: Vec<Op>,
}

impl Branch {
    pub fn writes(&self) -> bool {
        self.ops.iter().any(|op| !op.sql.starts_with("SELECT"))
    }
}

/// How accounts and products are picked.
#[derive(Debug, Clone)]
pub enum Keys {
    Uniform(u64),
    /// Zipf over `n` keys: the cumulative weights of ranks 1..=n.
    Zipf(Vec<f64>),
}

impl Keys {
    pub fn uniform(n: u64) -> Self {
        Keys::Uniform(n)
    }

    /// Zipf with exponent `s`: key `k` (0-based) is picked with weight
    /// `1 / (k + 1)^s`, so low ids are the hot accounts.
    pub fn zipf(n: u64, s: f64) -> Self {
        let mut total = 0.0;
        let mut cdf = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
        for k in 0..n {
            total += 1.0 / ((k + 1) as f64).powf(s);
            cdf.push(total);
        }
        for w in &mut cdf {
            *w /= total;
        }
        Keys::Zipf(cdf)
    }

    pub fn len(&self) -> u64 {
        match self {
            Keys::Uniform(n) => *n,
            Keys::Zipf(cdf) => cdf.len() as u64,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn pick(&self, rng: &mut StdRng) -> i64 {
        let k = match self {
            Keys::Uniform(n) => rng.random_range(0..*n),
            Keys::Zipf(cdf) => {
                let u: f64 = rng.random();
                cdf.partition_point(|w| *w < u).min(cdf.len() - 1) as u64
            }
        };
        i64::try_from(k).unwrap_or(i64::MAX)
    }
}

/// Makes the transactions of one workload.
pub struct Generator {
    pub workload: Workload,
    pub participants: usize,
    pub keys: Keys,
    /// Identifies the client in the orders it places.
    pub client: i64,
}

impl Generator {
    pub fn next(&self, rng: &mut StdRng) -> Vec<Branch> {
        let n = self.participants;
        let amount = || Param::Int(1);
        let debit = |account: i64| Op {
            sql: "UPDATE bench_accounts SET balance = balance - ? WHERE id = ?",
            params: vec![amount(), Param::Int(account)],
            expect_affected: Some(1),
        };
        let credit = |account: i64| Op {
            sql: "UPDATE bench_accounts SET balance = balance + ? WHERE id = ?",
            params: vec![amount(), Param::Int(account)],
            expect_affected: Some(1),
        };
        match self.workload {
            Workload::Transfer => {
                let (from, to) = two_of(rng, n);
                vec![
                    Branch {
                        participant: from,
                        ops: vec![debit(self.keys.pick(rng))],
                    },
                    Branch {
                        participant: to,
                        ops: vec![credit(self.keys.pick(rng))],
                    },
                ]
            }
            Workload::Transfer3 => {
                let first = rng.random_range(0..n);
                (0..3)
                    .map(|i| {
                        let participant = (first + i) % n;
                        let account = self.keys.pick(rng);
                        Branch {
                            participant,
                            ops: vec![if i == 0 {
                                Op {
                                    params: vec![Param::Int(2), Param::Int(account)],
                                    ..debit(account)
                                }
                            } else {
                                credit(account)
                            }],
                        }
                    })
                    .collect()
            }
            Workload::Order => {
                let (shop, warehouse) = two_of(rng, n);
                let sku = self.keys.pick(rng);
                vec![
                    Branch {
                        participant: shop,
                        ops: vec![Op {
                            sql: "INSERT INTO bench_orders (sku, qty, customer) VALUES (?, ?, ?)",
                            params: vec![Param::Int(sku), Param::Int(1), Param::Int(self.client)],
                            expect_affected: Some(1),
                        }],
                    },
                    Branch {
                        participant: warehouse,
                        ops: vec![Op {
                            sql: "UPDATE bench_stock SET qty = qty - ? WHERE sku = ? AND qty >= ?",
                            params: vec![Param::Int(1), Param::Int(sku), Param::Int(1)],
                            expect_affected: Some(1),
                        }],
                    },
                ]
            }
            Workload::Single => {
                let participant = rng.random_range(0..n);
                let from = self.keys.pick(rng);
                let mut to = self.keys.pick(rng);
                if to == from {
                    to = (from + 1) % i64::try_from(self.keys.len()).unwrap_or(i64::MAX);
                }
                // Lower id first: two transfers never lock in opposite order.
                let (a, b) = if from < to {
                    (debit(from), credit(to))
                } else {
                    (credit(to), debit(from))
                };
                vec![Branch {
                    participant,
                    ops: vec![a, b],
                }]
            }
            Workload::Audit => {
                let window = AUDIT_WINDOW.min(self.keys.len());
                let span = self.keys.len() - window + 1;
                (0..n)
                    .map(|participant| {
                        let low = i64::try_from(rng.random_range(0..span)).unwrap_or(0);
                        let high = low + i64::try_from(window).unwrap_or(0) - 1;
                        Branch {
                            participant,
                            ops: vec![Op {
                                sql: "SELECT COUNT(*), SUM(balance) FROM bench_accounts WHERE id BETWEEN ? AND ?",
                                params: vec![Param::Int(low), Param::Int(high)],
                                expect_affected: None,
                            }],
                        }
                    })
                    .collect()
            }
        }
    }
}

/// Two different participants.
fn two_of(rng: &mut StdRng, n: usize) -> (usize, usize) {
    let a = rng.random_range(0..n);
    let b = (a + rng.random_range(1..n)) % n;
    (a, b)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    fn generator(workload: Workload, keys: Keys) -> Generator {
        Generator {
            workload,
            participants: 3,
            keys,
            client: 7,
        }
    }

    #[test]
    fn each_workload_touches_the_participants_it_says() {
        let mut rng = StdRng::seed_from_u64(1);
        for workload in Workload::ALL {
            let g = generator(workload, Keys::uniform(1000));
            for _ in 0..200 {
                let branches = g.next(&mut rng);
                let mut ps: Vec<usize> = branches.iter().map(|b| b.participant).collect();
                ps.sort_unstable();
                ps.dedup();
                assert_eq!(ps.len(), branches.len(), "{workload}: a participant twice");
                let want = match workload {
                    Workload::Transfer | Workload::Order => 2,
                    Workload::Transfer3 | Workload::Audit => 3,
                    Workload::Single => 1,
                };
                assert_eq!(branches.len(), want, "{workload}");
                assert!(ps.iter().all(|p| *p < 3));
                let writes = branches.iter().any(Branch::writes);
                assert_eq!(writes, workload != Workload::Audit, "{workload}");
            }
        }
    }

    #[test]
    fn transfers_move_no_money_in_total() {
        let mut rng = StdRng::seed_from_u64(2);
        for workload in [Workload::Transfer, Workload::Transfer3, Workload::Single] {
            let g = generator(workload, Keys::uniform(50));
            for _ in 0..200 {
                let net: i64 = g
                    .next(&mut rng)
                    .iter()
                    .flat_map(|b| &b.ops)
                    .map(|op| {
                        let Param::Int(amount) = op.params[0];
                        if op.sql.contains("balance - ?") {
                            -amount
                        } else {
                            amount
                        }
                    })
                    .sum();
                assert_eq!(net, 0, "{workload}");
            }
        }
    }

    #[test]
    fn zipf_keys_are_in_range_and_skewed() {
        let keys = Keys::zipf(1000, 1.1);
        let mut rng = StdRng::seed_from_u64(3);
        let mut hot = 0;
        for _ in 0..10_000 {
            let k = keys.pick(&mut rng);
            assert!((0..1000).contains(&k));
            hot += i32::from(k < 10);
        }
        // Ten keys of a thousand get far more than 1% of the picks.
        assert!(hot > 3_000, "{hot}");
        let uniform = Keys::uniform(5);
        assert!((0..100).all(|_| (0..5).contains(&uniform.pick(&mut rng))));
    }

    #[test]
    fn audit_windows_fit_few_accounts() {
        let mut rng = StdRng::seed_from_u64(4);
        let g = generator(Workload::Audit, Keys::uniform(10));
        for branch in g.next(&mut rng) {
            assert_eq!(branch.ops[0].params, vec![Param::Int(0), Param::Int(9)]);
        }
    }
}
