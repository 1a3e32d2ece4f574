#pragma once

// The verb handlers the command table (command_table.cpp) binds, one file per group of verbs.
// Each reads its arguments from `s.inv`, prints its result and returns the exit code.

namespace skiff::cli {

class Session;

// job.cpp
int runJobValidate(Session& s);
int runJobRun(Session& s);
int runJobWait(Session& s);
int runJobList(Session& s);
int runJobGet(Session& s);
int runJobKill(Session& s);
int runJobScale(Session& s);
int runJobEnable(Session& s);
int runJobDisable(Session& s);
int runJobUpdate(Session& s);
int runJobHistory(Session& s);
int runJobRollback(Session& s);
int runJobPromote(Session& s);

// task.cpp
int runTaskList(Session& s);
int runTaskGet(Session& s);
int runTaskKill(Session& s);
int runTaskWhy(Session& s);

// node.cpp
int runNodeList(Session& s);
int runNodeGet(Session& s);
int runNodeDrain(Session& s);
int runNodeLabel(Session& s);

// named_resources.cpp: capacity groups and security groups.
int runCapacityList(Session& s);
int runCapacityGet(Session& s);
int runCapacityApply(Session& s);
int runCapacityDelete(Session& s);
int runSecurityGroupList(Session& s);
int runSecurityGroupGet(Session& s);
int runSecurityGroupApply(Session& s);
int runSecurityGroupDelete(Session& s);

// streams.cpp: `job endpoints` (with --watch), `logs` and `events`.
int runJobEndpoints(Session& s);
int runLogs(Session& s);
int runEvents(Session& s);

}  // namespace skiff::cli
