//! The schema every database of a local cluster gets: a bank (`accounts`),
//! a shop (`stock`, `orders`), and a table for free-form tests.

pub const DEMO: &[&str] = &[
    "CREATE TABLE accounts (
        id BIGINT PRIMARY KEY,
        owner VARCHAR(64) NOT NULL,
        balance BIGINT NOT NULL
    ) ENGINE=InnoDB",
    "CREATE TABLE stock (
        sku VARCHAR(32) PRIMARY KEY,
        qty INT NOT NULL
    ) ENGINE=InnoDB",
    "CREATE TABLE orders (
        id BIGINT AUTO_INCREMENT PRIMARY KEY,
        sku VARCHAR(32) NOT NULL,
        qty INT NOT NULL,
        customer VARCHAR(64) NOT NULL,
        total DECIMAL(12,2) NOT NULL,
        placed_at DATETIME NOT NULL
    ) ENGINE=InnoDB",
    "CREATE TABLE notes (
        id BIGINT PRIMARY KEY,
        body VARCHAR(255)
    ) ENGINE=InnoDB",
];
