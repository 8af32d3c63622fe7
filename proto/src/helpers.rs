//! Conveniences on the generated types: building statements and values,
//! and reading values back.

use crate::v1::value::Kind;
use crate::v1::{Expect, Statement, Value, expect};

impl Statement {
    /// A statement with `?` placeholders; add values with [`Statement::bind`].
    pub fn new(sql: impl Into<String>) -> Self {
        Self {
            sql: sql.into(),
            params: Vec::new(),
            expect: None,
        }
    }

    pub fn bind(mut self, value: impl Into<Value>) -> Self {
        self.params.push(value.into());
        self
    }

    /// Guard: the branch votes NO unless exactly `n` rows are affected.
    pub fn expect_rows_affected(mut self, n: u64) -> Self {
        self.expect = Some(Expect {
            check: Some(expect::Check::RowsAffectedEq(n)),
        });
        self
    }

    /// Guard: the branch votes NO unless at least `n` rows are affected.
    pub fn expect_rows_affected_at_least(mut self, n: u64) -> Self {
        self.expect = Some(Expect {
            check: Some(expect::Check::RowsAffectedGe(n)),
        });
        self
    }

    /// Guard: the branch votes NO unless exactly `n` rows are returned.
    pub fn expect_rows_returned(mut self, n: u64) -> Self {
        self.expect = Some(Expect {
            check: Some(expect::Check::RowsReturnedEq(n)),
        });
        self
    }
}

impl Value {
    pub fn null() -> Self {
        Self {
            kind: Some(Kind::NullValue(true)),
        }
    }

    pub fn decimal(text: impl Into<String>) -> Self {
        Self {
            kind: Some(Kind::DecimalValue(text.into())),
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.kind, Some(Kind::NullValue(_)))
    }

    /// The value as a signed integer, if it is an integer that fits.
    pub fn as_i64(&self) -> Option<i64> {
        match &self.kind {
            Some(Kind::IntValue(v)) => Some(*v),
            Some(Kind::UintValue(v)) => i64::try_from(*v).ok(),
            Some(Kind::DecimalValue(v)) => v.parse().ok(),
            _ => None,
        }
    }

    /// The value as text, for string-like kinds.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Some(
                Kind::StringValue(v)
                | Kind::DecimalValue(v)
                | Kind::DateValue(v)
                | Kind::DatetimeValue(v)
                | Kind::TimeValue(v),
            ) => Some(v),
            _ => None,
        }
    }
}

macro_rules! from_kind {
    ($($t:ty => $kind:ident as $as:ty),* $(,)?) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Self {
                Self { kind: Some(Kind::$kind(<$as>::from(v))) }
            }
        }
    )*};
}

from_kind! {
    i8 => IntValue as i64,
    i16 => IntValue as i64,
    i32 => IntValue as i64,
    i64 => IntValue as i64,
    u8 => UintValue as u64,
    u16 => UintValue as u64,
    u32 => UintValue as u64,
    u64 => UintValue as u64,
    f32 => DoubleValue as f64,
    f64 => DoubleValue as f64,
    bool => BoolValue as bool,
    String => StringValue as String,
    &str => StringValue as String,
    Vec<u8> => BytesValue as Vec<u8>,
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or_else(Value::null, Into::into)
    }
}
