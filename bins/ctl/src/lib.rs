//! agentry ctl
