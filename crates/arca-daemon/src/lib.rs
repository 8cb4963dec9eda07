//! arca-daemon: the job configuration file, the scheduler (with an injected clock),
//! backup windows and exclusion periods, the job runner and the run history.
