// Fitness policy unit tests: scores of single (job, node) pairs on hand-built states.

#include "controlplane/scheduler/fitness.h"

#include <gtest/gtest.h>

#include "controlplane/scheduler/constraints.h"
#include "controlplane/scheduler/model.h"

namespace skiff::controlplane::scheduler {
namespace {

JobState jobAsking(double cpu, int64_t memoryMB) {
  JobState job;
  job.shape.id = "j";
  job.shape.resources = {cpu, memoryMB, 0, 0, 0};
  return job;
}

NodeState nodeUsing(double cpu, int64_t memoryMB) {
  NodeState node;
  node.spec.id = "n";
  node.spec.capacity = {8, 8192, 100000, 1000, 0};
  node.used = {cpu, memoryMB, 0, 0, 0};
  return node;
}

TEST(ComplementFitness, NodeShortOfCoresPrefersMemoryHeavyTasks) {
  ComplementFitness fitness;
  ClusterView view;
  NodeState node = nodeUsing(6, 2048);  // Free: 2 cores, 6 GiB.
  double memoryHeavy = fitness.score(jobAsking(0.5, 2048), 0, node, view);
  double cpuHeavy = fitness.score(jobAsking(2, 512), 0, node, view);
  EXPECT_GT(memoryHeavy, cpuHeavy);
  EXPECT_GT(cpuHeavy, 0);
  EXPECT_LE(memoryHeavy, 1.0);
}

TEST(ComplementFitness, TaskShapedLikeTheFreeRoomScoresOneWhateverItsSize) {
  ComplementFitness fitness;
  ClusterView view;
  NodeState node = nodeUsing(4, 6144);  // Free: 4 cores, 2 GiB (shares 0.5, 0.25).
  EXPECT_NEAR(fitness.score(jobAsking(2, 1024), 0, node, view), 1.0, 1e-9);
  EXPECT_NEAR(fitness.score(jobAsking(0.2, 102), 0, node, view), 1.0, 1e-3);
}

TEST(ComplementFitness, TaskThatDoesNotFitScoresZero) {
  ComplementFitness fitness;
  ClusterView view;
  NodeState node = nodeUsing(7.5, 1024);
  EXPECT_EQ(fitness.score(jobAsking(1, 1024), 0, node, view), 0);
  node = nodeUsing(1, 8000);
  EXPECT_EQ(fitness.score(jobAsking(1, 1024), 0, node, view), 0);
}

TEST(ComplementFitness, NominatedRoomCountsAsTaken) {
  ComplementFitness fitness;
  ClusterView view;
  NodeState node = nodeUsing(2, 2048);
  node.nominated = {4, 0, 0, 0, 0};  // Free: 2 cores, 6 GiB once the nomination is counted.
  double memoryHeavy = fitness.score(jobAsking(0.5, 2048), 0, node, view);
  double cpuHeavy = fitness.score(jobAsking(2, 512), 0, node, view);
  EXPECT_GT(memoryHeavy, cpuHeavy);
  node.nominated = {6.5, 0, 0, 0, 0};
  EXPECT_EQ(fitness.score(jobAsking(1, 512), 0, node, view), 0);
}

TEST(BinPackingFitness, FullerAndEvenerNodesScoreHigher) {
  BinPackingFitness fitness(0.5);
  ClusterView view;
  JobState job = jobAsking(1, 1024);
  EXPECT_GT(fitness.score(job, 0, nodeUsing(4, 4096), view),
            fitness.score(job, 0, nodeUsing(0, 0), view));
  EXPECT_GT(fitness.score(job, 0, nodeUsing(4, 4096), view),
            fitness.score(job, 0, nodeUsing(6, 1024), view));
}

}  // namespace
}  // namespace skiff::controlplane::scheduler
