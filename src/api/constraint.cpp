#include "api/constraint.h"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <optional>

#include "api/names.h"

namespace skiff::api {
namespace {

std::string_view trim(std::string_view text) {
  while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
  while (!text.empty() && text.back() == ' ') text.remove_suffix(1);
  return text;
}

std::optional<double> parseNumber(std::string_view text) {
  text = trim(text);
  if (text.empty()) return std::nullopt;
  double value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || !std::isfinite(value)) {
    return std::nullopt;
  }
  return value;
}

}  // namespace

bool AttributeExpression::matches(const std::string* value) const {
  switch (op) {
    case Op::kExists:
      return value != nullptr;
    case Op::kNotExists:
      return value == nullptr;
    case Op::kEquals:
      return value != nullptr && *value == values.front();
    case Op::kNotEquals:
      return value == nullptr || *value != values.front();
    case Op::kIn:
    case Op::kNotIn: {
      bool found = false;
      if (value != nullptr) {
        for (const std::string& candidate : values) found = found || candidate == *value;
      }
      return op == Op::kIn ? found : !found;
    }
    case Op::kLess:
    case Op::kLessEq:
    case Op::kGreater:
    case Op::kGreaterEq: {
      if (value == nullptr) return false;
      auto number = parseNumber(*value);
      if (!number) return false;
      if (op == Op::kLess) return *number < this->number;
      if (op == Op::kLessEq) return *number <= this->number;
      if (op == Op::kGreater) return *number > this->number;
      return *number >= this->number;
    }
  }
  return false;
}

std::expected<AttributeExpression, std::string> parseAttributeExpression(std::string_view text) {
  AttributeExpression expression;
  using Op = AttributeExpression::Op;
  text = trim(text);
  if (text.empty()) return std::unexpected("must not be empty");
  if (text == "exists") {
    expression.op = Op::kExists;
    return expression;
  }
  if (text == "!exists") {
    expression.op = Op::kNotExists;
    return expression;
  }
  for (auto [prefix, op] : {std::pair{std::string_view("in("), Op::kIn},
                            std::pair{std::string_view("notin("), Op::kNotIn}}) {
    if (!text.starts_with(prefix)) continue;
    if (!text.ends_with(")")) return std::unexpected("a list must end with \")\"");
    std::string_view list = text.substr(prefix.size(), text.size() - prefix.size() - 1);
    expression.op = op;
    while (true) {
      size_t comma = list.find(',');
      std::string_view item = trim(list.substr(0, comma));
      if (item.empty()) return std::unexpected("list items must not be empty");
      expression.values.emplace_back(item);
      if (comma == std::string_view::npos) break;
      list.remove_prefix(comma + 1);
    }
    return expression;
  }
  for (auto [prefix, op] : {std::pair{std::string_view(">="), Op::kGreaterEq},
                            std::pair{std::string_view("<="), Op::kLessEq},
                            std::pair{std::string_view(">"), Op::kGreater},
                            std::pair{std::string_view("<"), Op::kLess}}) {
    if (!text.starts_with(prefix)) continue;
    auto number = parseNumber(text.substr(prefix.size()));
    if (!number) return std::unexpected("a comparison needs a number after the operator");
    expression.op = op;
    expression.number = *number;
    return expression;
  }
  if (text.starts_with("!=")) {
    std::string_view value = trim(text.substr(2));
    if (value.empty()) return std::unexpected("\"!=\" needs a value");
    expression.op = Op::kNotEquals;
    expression.values.emplace_back(value);
    return expression;
  }
  if (text.starts_with("=")) text = trim(text.substr(1));
  if (text.empty()) return std::unexpected("\"=\" needs a value");
  expression.op = Op::kEquals;
  expression.values.emplace_back(text);
  return expression;
}

bool validAttributeName(std::string_view name) {
  return validShortName(name);
}

}  // namespace skiff::api
