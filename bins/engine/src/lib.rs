//! agentry-engine
