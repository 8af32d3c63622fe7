//! Typed values between gRPC and MySQL: binding statement parameters and
//! decoding result rows by column type.

use chrono::{NaiveDate, NaiveDateTime};
use sqlx::mysql::types::MySqlTime;
use sqlx::mysql::{MySqlArguments, MySqlRow};
use sqlx::query::Query;
use sqlx::{Column, MySql, Row, TypeInfo, ValueRef};
use tandem_proto::v1::value::Kind;
use tandem_proto::v1::{self as pb, Value};

use crate::error::Error;

/// Checks every parameter before anything runs, so a bad one changes
/// nothing: each value has a kind, and decimal / date / time text is well
/// formed.
pub fn validate_params(statement: usize, params: &[Value]) -> Result<(), Error> {
    for (i, value) in params.iter().enumerate() {
        let bad = |what: &str, text: &str| {
            Error::InvalidArgument(format!(
                "statement {statement}, parameter {}: {text:?} is not a valid {what}",
                i + 1
            ))
        };
        match &value.kind {
            None => {
                return Err(Error::InvalidArgument(format!(
                    "statement {statement}, parameter {}: value has no kind set",
                    i + 1
                )));
            }
            Some(Kind::DecimalValue(s)) if !is_decimal(s) => return Err(bad("decimal", s)),
            Some(Kind::DateValue(s)) if NaiveDate::parse_from_str(s, "%Y-%m-%d").is_err() => {
                return Err(bad("date (YYYY-MM-DD)", s));
            }
            Some(Kind::DatetimeValue(s)) if !is_datetime(s) => {
                return Err(bad("datetime (YYYY-MM-DD HH:MM:SS[.ffffff])", s));
            }
            Some(Kind::TimeValue(s)) if !is_time(s) => return Err(bad("time ([-]HH:MM:SS[.ffffff])", s)),
            Some(Kind::DoubleValue(d)) if !d.is_finite() => {
                return Err(bad("double (MySQL has no NaN or infinity)", &d.to_string()));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

fn is_decimal(s: &str) -> bool {
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    !(int.is_empty() && frac.is_empty())
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
        && digits.len() <= 80
}

fn is_datetime(s: &str) -> bool {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").is_ok()
}

fn is_time(s: &str) -> bool {
    let body = s.strip_prefix('-').unwrap_or(s);
    let (hms, frac) = body.split_once('.').unwrap_or((body, ""));
    let parts: Vec<&str> = hms.split(':').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        && parts[0].len() <= 3
        && parts[1].len() == 2
        && parts[2].len() == 2
        && parts[1] < "60"
        && parts[2] < "60"
        && frac.len() <= 6
        && frac.bytes().all(|b| b.is_ascii_digit())
}

/// Binds validated parameters. Decimals and dates go as text: MySQL
/// converts them exactly to the column's type.
pub fn bind<'q>(mut query: Query<'q, MySql, MySqlArguments>, params: &'q [Value]) -> Query<'q, MySql, MySqlArguments> {
    for value in params {
        query = match &value.kind {
            None | Some(Kind::NullValue(_)) => query.bind(None::<String>),
            Some(Kind::IntValue(v)) => query.bind(*v),
            Some(Kind::UintValue(v)) => query.bind(*v),
            Some(Kind::DoubleValue(v)) => query.bind(*v),
            Some(Kind::BoolValue(v)) => query.bind(*v),
            Some(Kind::BytesValue(v)) => query.bind(v.as_slice()),
            // String, decimal, date, datetime and time: their text.
            Some(_) => query.bind(value.as_str().unwrap_or_default()),
        };
    }
    query
}

/// Column names of a result.
pub fn columns(row: &MySqlRow) -> Vec<String> {
    row.columns().iter().map(|c| c.name().to_owned()).collect()
}

/// Decodes one row into typed values, by each column's MySQL type.
pub fn decode_row(row: &MySqlRow) -> Result<pb::Row, Error> {
    let mut values = Vec::with_capacity(row.len());
    for (i, column) in row.columns().iter().enumerate() {
        values.push(decode_cell(row, i).map_err(|e| {
            Error::Internal(format!(
                "cannot decode column {:?} of type {}: {e}",
                column.name(),
                column.type_info().name()
            ))
        })?);
    }
    Ok(pb::Row { values })
}

fn decode_cell(row: &MySqlRow, i: usize) -> Result<Value, sqlx::Error> {
    let raw = row.try_get_raw(i)?;
    if raw.is_null() {
        return Ok(value(Kind::NullValue(true)));
    }
    let type_name = raw.type_info().name().to_owned();
    let kind = match type_name.as_str() {
        "BOOLEAN" => Kind::BoolValue(row.try_get_unchecked::<bool, _>(i)?),
        "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" | "YEAR" => {
            Kind::IntValue(row.try_get_unchecked::<i64, _>(i)?)
        }
        "TINYINT UNSIGNED" | "SMALLINT UNSIGNED" | "MEDIUMINT UNSIGNED" | "INT UNSIGNED" | "BIGINT UNSIGNED"
        | "BIT" => Kind::UintValue(row.try_get_unchecked::<u64, _>(i)?),
        "FLOAT" => Kind::DoubleValue(f64::from(row.try_get_unchecked::<f32, _>(i)?)),
        "DOUBLE" => Kind::DoubleValue(row.try_get_unchecked::<f64, _>(i)?),
        "DECIMAL" => Kind::DecimalValue(row.try_get_unchecked::<String, _>(i)?),
        "DATE" => match row.try_get_unchecked::<NaiveDate, _>(i) {
            Ok(d) => Kind::DateValue(d.format("%Y-%m-%d").to_string()),
            // Zero dates ("0000-00-00") have no chrono value.
            Err(_) => Kind::DateValue("0000-00-00".to_owned()),
        },
        "DATETIME" | "TIMESTAMP" => match row.try_get_unchecked::<NaiveDateTime, _>(i) {
            Ok(d) => Kind::DatetimeValue(d.format("%Y-%m-%d %H:%M:%S%.f").to_string()),
            Err(_) => Kind::DatetimeValue("0000-00-00 00:00:00".to_owned()),
        },
        "TIME" => Kind::TimeValue(row.try_get_unchecked::<MySqlTime, _>(i)?.to_string()),
        "BINARY" | "VARBINARY" | "BLOB" | "TINYBLOB" | "MEDIUMBLOB" | "LONGBLOB" | "GEOMETRY" => {
            Kind::BytesValue(row.try_get_unchecked::<Vec<u8>, _>(i)?)
        }
        // Character data (CHAR, VARCHAR, TEXT, ENUM, SET, JSON) and anything
        // newer: text, falling back to bytes when not valid UTF-8.
        _ => match row.try_get_unchecked::<String, _>(i) {
            Ok(s) => Kind::StringValue(s),
            Err(_) => Kind::BytesValue(row.try_get_unchecked::<Vec<u8>, _>(i)?),
        },
    };
    Ok(value(kind))
}

fn value(kind: Kind) -> Value {
    Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(kind: Kind) -> Value {
        value(kind)
    }

    #[test]
    fn well_formed_params_pass() {
        let params = [
            v(Kind::IntValue(-1)),
            v(Kind::DecimalValue("-12.50".into())),
            v(Kind::DecimalValue(".5".into())),
            v(Kind::DateValue("2024-02-29".into())),
            v(Kind::DatetimeValue("2024-02-29 23:59:59.123456".into())),
            v(Kind::TimeValue("-838:59:59".into())),
            v(Kind::NullValue(true)),
        ];
        validate_params(1, &params).unwrap();
    }

    #[test]
    fn malformed_params_are_named() {
        for (value, needle) in [
            (Value { kind: None }, "no kind"),
            (v(Kind::DecimalValue("12.x".into())), "decimal"),
            (v(Kind::DecimalValue("".into())), "decimal"),
            (v(Kind::DecimalValue("1e5".into())), "decimal"),
            (v(Kind::DateValue("2023-02-29".into())), "date"),
            (v(Kind::DatetimeValue("2024-01-01".into())), "datetime"),
            (v(Kind::TimeValue("10:61:00".into())), "time"),
            (v(Kind::DoubleValue(f64::NAN)), "double"),
        ] {
            let err = validate_params(3, &[v(Kind::IntValue(1)), value])
                .unwrap_err()
                .to_string();
            assert!(err.contains("statement 3, parameter 2"), "{err}");
            assert!(err.contains(needle), "{err}");
        }
    }
}
