//! agentry-monitor
