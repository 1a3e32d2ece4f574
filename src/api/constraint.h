#pragma once

// Attribute expressions: the constraint `attribute.<name>` compares a node attribute with a
// value. Parsed at validation time, so a job with a malformed expression is rejected on submit.
//
// Syntax of the constraint value:
//   VALUE            the attribute equals VALUE (also "=VALUE")
//   !=VALUE          the attribute is absent or differs from VALUE
//   in(A,B,...)      the attribute is one of the listed values
//   notin(A,B,...)   the attribute is absent or none of the listed values
//   exists, !exists  the attribute is present / absent
//   >N, >=N, <N, <=N the attribute is a number compared with N

#include <expected>
#include <string>
#include <string_view>
#include <vector>

namespace skiff::api {

inline constexpr std::string_view kAttributeConstraintPrefix = "attribute.";

struct AttributeExpression {
  enum class Op {
    kEquals,
    kNotEquals,
    kIn,
    kNotIn,
    kExists,
    kNotExists,
    kLess,
    kLessEq,
    kGreater,
    kGreaterEq
  };
  Op op = Op::kEquals;
  std::vector<std::string> values;  // kEquals, kNotEquals (one), kIn, kNotIn (one or more).
  double number = 0;                // The comparisons.

  // True when a node whose attribute has `value` (nullptr: the node lacks it) satisfies this.
  bool matches(const std::string* value) const;
};

// Parses a constraint value; the error names the rule that failed.
std::expected<AttributeExpression, std::string> parseAttributeExpression(std::string_view text);

// True when `name` is a valid attribute name: 1 to 64 of [A-Za-z0-9_.-].
bool validAttributeName(std::string_view name);

}  // namespace skiff::api
