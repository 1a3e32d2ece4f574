#pragma once

// Fitness policies rank the nodes that pass the hard constraints, each in [0, 1] (1 best).
// `WeightedFitness` combines them; the scheduler stops its search at a node whose combined
// fitness reaches the good-enough cutoff.

#include <memory>
#include <string_view>
#include <utility>
#include <vector>

#include "controlplane/scheduler/model.h"

namespace skiff::controlplane::scheduler {

class FitnessPolicy {
 public:
  virtual ~FitnessPolicy() = default;
  virtual std::string_view name() const = 0;
  virtual double score(const JobState& job, uint32_t node, const NodeState& state,
                       const ClusterView& cluster) const = 0;
};

// Fenzo's cpuMemBinPacker: the mean share of cpu and memory in use once the task is added, so
// the fullest node that still fits wins and whole nodes stay free; minus `imbalanceWeight`
// times the gap between the two shares, so cpu-heavy and memory-heavy tasks share nodes.
class BinPackingFitness final : public FitnessPolicy {
 public:
  explicit BinPackingFitness(double imbalanceWeight = 0.5) : imbalanceWeight_(imbalanceWeight) {}
  std::string_view name() const override { return "binPacking"; }
  double score(const JobState& job, uint32_t node, const NodeState& state,
               const ClusterView& cluster) const override;

 private:
  double imbalanceWeight_;
};

// How well a task's shape complements the room left on a node: the cosine between the task's
// (cpu, memory) vector and the node's free (cpu, memory) vector, both as shares of the node's
// capacity (nominated room counts as taken). A node whose cores are nearly gone but whose memory
// is free scores memory-heavy tasks high and cpu-heavy tasks low, so that the node fills evenly
// in both (the alignment rule of vector bin packing, as in Tetris, Grandl et al. SIGCOMM 2014).
// 0 when the task does not fit the node's free cpu or memory.
class ComplementFitness final : public FitnessPolicy {
 public:
  std::string_view name() const override { return "complement"; }
  double score(const JobState& job, uint32_t node, const NodeState& state,
               const ClusterView& cluster) const override;
};

// For critical-tier services: half the free share of cpu and memory, half how few of the job's
// tasks are already on the node, so one node's loss takes few replicas.
class SpreadingFitness final : public FitnessPolicy {
 public:
  std::string_view name() const override { return "spreading"; }
  double score(const JobState& job, uint32_t node, const NodeState& state,
               const ClusterView& cluster) const override;
};

// 1 when the node recently ran the job's image (no pull), else 0.
class CachedImageFitness final : public FitnessPolicy {
 public:
  std::string_view name() const override { return "cachedImage"; }
  double score(const JobState& job, uint32_t node, const NodeState& state,
               const ClusterView& cluster) const override;
};

// The share of the job's soft constraints the node meets (1 when it has none).
class SoftConstraintFitness final : public FitnessPolicy {
 public:
  std::string_view name() const override { return "softConstraints"; }
  double score(const JobState& job, uint32_t node, const NodeState& state,
               const ClusterView& cluster) const override;
};

// The weighted mean of its parts (weights need not sum to 1).
class WeightedFitness final : public FitnessPolicy {
 public:
  void add(std::unique_ptr<FitnessPolicy> policy, double weight);
  std::string_view name() const override { return "weighted"; }
  double score(const JobState& job, uint32_t node, const NodeState& state,
               const ClusterView& cluster) const override;

 private:
  std::vector<std::pair<std::unique_ptr<FitnessPolicy>, double>> parts_;
  double totalWeight_ = 0;
};

}  // namespace skiff::controlplane::scheduler
