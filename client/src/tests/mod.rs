//! Behaviour tests of the producer, consumer and admin against the in-process fake broker.

mod admin;
mod consumer;
mod producer;
