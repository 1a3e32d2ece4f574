#include "controlplane/address_blocks.h"

namespace skiff::controlplane {

Status validateAddressPlan(const AddressPlan& plan) {
  auto range = api::parseCidr(plan.vpcCidr);
  if (!range) return std::unexpected(range.error().wrap("--vpc-cidr " + plan.vpcCidr));
  if (plan.nodeBlockPrefix < range->prefix || plan.nodeBlockPrefix > 30) {
    return fail(ErrorCode::kInvalidArgument,
                "--node-block-prefix must be between the VPC prefix (" +
                    std::to_string(range->prefix) + ") and 30");
  }
  return {};
}

Result<std::string> chooseAddressBlock(const AddressPlan& plan, const std::string& current,
                                       const std::function<bool(const std::string&)>& taken,
                                       uint64_t* searchFrom) {
  auto range = api::parseCidr(plan.vpcCidr);
  if (!range) return std::unexpected(range.error().wrap("vpc range"));
  if (!current.empty() && !taken(current)) {
    auto block = api::parseCidr(current);
    if (block && block->prefix == plan.nodeBlockPrefix && range->contains(*block)) return current;
  }
  uint64_t count = uint64_t{1} << (plan.nodeBlockPrefix - range->prefix);
  for (uint64_t index = searchFrom != nullptr ? *searchFrom : 0; index < count; ++index) {
    std::string candidate = api::subBlock(*range, plan.nodeBlockPrefix, index)->toString();
    if (!taken(candidate)) {
      if (searchFrom != nullptr) *searchFrom = index + 1;
      return candidate;
    }
  }
  return fail(ErrorCode::kUnavailable, "the VPC range " + plan.vpcCidr + " has no free /" +
                                           std::to_string(plan.nodeBlockPrefix) + " block left");
}

Result<std::string> chooseAddressBlock(const AddressPlan& plan, const std::string& current,
                                       const std::set<std::string>& taken) {
  return chooseAddressBlock(plan, current,
                            [&taken](const std::string& block) { return taken.contains(block); });
}

}  // namespace skiff::controlplane
