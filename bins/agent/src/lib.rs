//! agentry-agent
