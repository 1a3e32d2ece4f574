#include "controlplane/scheduler/constraints.h"

#include <map>

#include "api/constraint.h"

namespace skiff::controlplane::scheduler {
namespace {

const std::string* attributeOf(const NodeState& node, const std::string& key) {
  auto it = node.spec.attributes.find(key);
  return it == node.spec.attributes.end() ? nullptr : &it->second;
}

// `zone`/`availabilityZone`, `machineType`, `machineGroup`: the node attribute equals a value.
class AttributeEqualsFilter final : public ConstraintFilter {
 public:
  AttributeEqualsFilter(std::string name, std::string attribute, std::string value)
      : name_(std::move(name)), attribute_(std::move(attribute)), value_(std::move(value)) {}
  std::string_view name() const override { return name_; }
  Monotonicity monotonicity() const override { return Monotonicity::kClass; }
  std::string signature() const override { return attribute_ + "=" + value_; }
  bool accepts(const JobState&, uint32_t, const NodeState& node,
               const ClusterView&) const override {
    const std::string* value = attributeOf(node, attribute_);
    return value != nullptr && *value == value_;
  }

 private:
  std::string name_;
  std::string attribute_;
  std::string value_;
};

class MachineIdFilter final : public ConstraintFilter {
 public:
  explicit MachineIdFilter(std::string id) : id_(std::move(id)) {}
  std::string_view name() const override { return "machineId"; }
  Monotonicity monotonicity() const override { return Monotonicity::kClass; }
  std::string signature() const override { return "machineId=" + id_; }
  bool accepts(const JobState&, uint32_t, const NodeState& node,
               const ClusterView&) const override {
    return node.spec.id == id_;
  }

 private:
  std::string id_;
};

// `attribute.<name>`: an expression over one node attribute.
class AttributeExpressionFilter final : public ConstraintFilter {
 public:
  AttributeExpressionFilter(std::string name, std::string attribute, std::string text,
                            api::AttributeExpression expression)
      : name_(std::move(name)),
        attribute_(std::move(attribute)),
        text_(std::move(text)),
        expression_(std::move(expression)) {}
  std::string_view name() const override { return name_; }
  Monotonicity monotonicity() const override { return Monotonicity::kClass; }
  std::string signature() const override { return name_ + ":" + text_; }
  bool accepts(const JobState&, uint32_t, const NodeState& node,
               const ClusterView&) const override {
    return expression_.matches(attributeOf(node, attribute_));
  }

 private:
  std::string name_;
  std::string attribute_;
  std::string text_;
  api::AttributeExpression expression_;
};

// At most one task of the job per node.
class UniqueHostFilter final : public ConstraintFilter {
 public:
  std::string_view name() const override { return "uniqueHost"; }
  Monotonicity monotonicity() const override { return Monotonicity::kJob; }
  std::string signature() const override { return "uniqueHost"; }
  bool accepts(const JobState& job, uint32_t node, const NodeState&,
               const ClusterView&) const override {
    return job.tasksOn(node) == 0;
  }
};

// The job's tasks share a node with no other job's tasks. (The reverse direction, other jobs
// kept off a node holding an exclusive task, applies to every job and is checked by the
// scheduler itself.)
class ExclusiveHostFilter final : public ConstraintFilter {
 public:
  std::string_view name() const override { return "exclusiveHost"; }
  Monotonicity monotonicity() const override { return Monotonicity::kJob; }
  std::string signature() const override { return "exclusiveHost"; }
  bool accepts(const JobState& job, uint32_t node, const NodeState& state,
               const ClusterView&) const override {
    int64_t own = job.tasksOn(node) > 0 ? 1 : 0;
    return state.distinctJobs - own == 0;
  }
};

// The job's tasks are spread evenly over the zones of schedulable nodes: a zone may take one more
// task only while it holds no more than ceil((placed + 1) / zones) - 1.
class ZoneBalanceFilter final : public ConstraintFilter {
 public:
  std::string_view name() const override { return "zoneBalance"; }
  Monotonicity monotonicity() const override { return Monotonicity::kDynamic; }
  std::string signature() const override { return "zoneBalance"; }
  bool accepts(const JobState& job, uint32_t, const NodeState& node,
               const ClusterView& cluster) const override {
    if (cluster.zoneCount <= 1) return true;
    if (node.zone < 0) return false;
    int64_t inZone =
        static_cast<size_t>(node.zone) < job.perZone.size() ? job.perZone[node.zone] : 0;
    int64_t cap = (job.placed + 1 + cluster.zoneCount - 1) / cluster.zoneCount;
    return inZone + 1 <= cap;
  }
};

}  // namespace

std::vector<std::unique_ptr<ConstraintFilter>> compileConstraints(
    const std::map<std::string, std::string>& constraints) {
  std::vector<std::unique_ptr<ConstraintFilter>> filters;
  for (const auto& [name, value] : constraints) {
    if (name == "zone" || name == "availabilityZone") {
      filters.push_back(std::make_unique<AttributeEqualsFilter>(name, "zone", value));
    } else if (name == "machineType" || name == "machineGroup") {
      filters.push_back(std::make_unique<AttributeEqualsFilter>(name, name, value));
    } else if (name == "machineId") {
      filters.push_back(std::make_unique<MachineIdFilter>(value));
    } else if (name == "uniqueHost" && value == "true") {
      filters.push_back(std::make_unique<UniqueHostFilter>());
    } else if (name == "exclusiveHost" && value == "true") {
      filters.push_back(std::make_unique<ExclusiveHostFilter>());
    } else if (name == "zoneBalance" && value == "true") {
      filters.push_back(std::make_unique<ZoneBalanceFilter>());
    } else if (name.starts_with(api::kAttributeConstraintPrefix)) {
      auto expression = api::parseAttributeExpression(value);
      if (!expression) continue;  // Validation rejects these; stored jobs predate nothing.
      filters.push_back(std::make_unique<AttributeExpressionFilter>(
          name, name.substr(api::kAttributeConstraintPrefix.size()), value,
          std::move(*expression)));
    }
    // `activeHost`: only Ready nodes are candidates anyway.
  }
  return filters;
}

}  // namespace skiff::controlplane::scheduler
