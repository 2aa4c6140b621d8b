//! In-process tests of the mock.
