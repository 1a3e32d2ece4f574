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
                                       const std::set<std::string>& taken) {
  auto range = api::parseCidr(plan.vpcCidr);
  if (!range) return std::unexpected(range.error().wrap("vpc range"));
  if (!current.empty() && !taken.contains(current)) {
    auto block = api::parseCidr(current);
    if (block && block->prefix == plan.nodeBlockPrefix && range->contains(*block)) return current;
  }
  uint64_t count = uint64_t{1} << (plan.nodeBlockPrefix - range->prefix);
  for (uint64_t index = 0; index < count; ++index) {
    std::string candidate = api::subBlock(*range, plan.nodeBlockPrefix, index)->toString();
    if (!taken.contains(candidate)) return candidate;
  }
  return fail(ErrorCode::kUnavailable, "the VPC range " + plan.vpcCidr + " has no free /" +
                                           std::to_string(plan.nodeBlockPrefix) + " block left");
}

}  // namespace skiff::controlplane
