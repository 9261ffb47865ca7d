//! SPIFFE ID matchers.
