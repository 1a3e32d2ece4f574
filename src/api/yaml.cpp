#include <cmath>
#include <cstdlib>
#include <regex>

#include <yaml-cpp/yaml.h>

#include "api/job.h"

namespace skiff::api {
namespace {

using nlohmann::json;

const std::regex kNullPattern("~|null|Null|NULL");
const std::regex kTruePattern("true|True|TRUE");
const std::regex kFalsePattern("false|False|FALSE");
const std::regex kIntPattern("[-+]?[0-9]+");
const std::regex kHexPattern("0x[0-9a-fA-F]+");
const std::regex kFloatPattern("[-+]?(\\.[0-9]+|[0-9]+(\\.[0-9]*)?)([eE][-+]?[0-9]+)?");

// Resolves a plain (unquoted) scalar by the YAML 1.2 core schema.
json resolvePlainScalar(const std::string& text) {
  if (text.empty() || std::regex_match(text, kNullPattern)) return nullptr;
  if (std::regex_match(text, kTruePattern)) return true;
  if (std::regex_match(text, kFalsePattern)) return false;
  try {
    if (std::regex_match(text, kIntPattern)) return std::stoll(text);
    if (std::regex_match(text, kHexPattern)) return std::stoll(text, nullptr, 16);
    if (std::regex_match(text, kFloatPattern)) return std::stod(text);
  } catch (const std::out_of_range&) {
    // Beyond int64 reads as a double; beyond double (1e400) stays text, for validation to reject.
    double value = std::strtod(text.c_str(), nullptr);
    if (std::isfinite(value)) return value;
    return text;
  }
  return text;
}

std::string where(const YAML::Mark& mark) {
  return "line " + std::to_string(mark.line + 1) + ", column " + std::to_string(mark.column + 1);
}

// More values than any valid job has: aliases let a few bytes name millions of them.
constexpr size_t kMaxValues = 100'000;

Result<json> convert(const YAML::Node& node, int depth, size_t& values) {
  if (depth > 64) {
    return fail(ErrorCode::kInvalidArgument, where(node.Mark()) + ": nesting deeper than 64");
  }
  if (++values > kMaxValues) {
    return fail(ErrorCode::kInvalidArgument, where(node.Mark()) + ": more than " +
                                                 std::to_string(kMaxValues) +
                                                 " values (aliases expand too far)");
  }
  switch (node.Type()) {
    case YAML::NodeType::Undefined:
    case YAML::NodeType::Null:
      return json(nullptr);
    case YAML::NodeType::Scalar: {
      const std::string& tag = node.Tag();
      if (tag == "!" || tag == "tag:yaml.org,2002:str") return json(node.Scalar());
      return resolvePlainScalar(node.Scalar());
    }
    case YAML::NodeType::Sequence: {
      json out = json::array();
      for (const auto& item : node) {
        auto value = convert(item, depth + 1, values);
        if (!value) return value;
        out.push_back(std::move(*value));
      }
      return out;
    }
    case YAML::NodeType::Map: {
      json out = json::object();
      for (const auto& entry : node) {
        if (!entry.first.IsScalar()) {
          return fail(ErrorCode::kInvalidArgument,
                      where(entry.first.Mark()) + ": map keys must be plain strings");
        }
        const std::string& key = entry.first.Scalar();
        if (out.contains(key)) {
          return fail(ErrorCode::kInvalidArgument,
                      where(entry.first.Mark()) + ": duplicate key " + json(key).dump());
        }
        auto value = convert(entry.second, depth + 1, values);
        if (!value) return value;
        out[key] = std::move(*value);
      }
      return out;
    }
  }
  return json(nullptr);
}

void emit(YAML::Emitter& out, const json& value) {
  switch (value.type()) {
    case json::value_t::object:
      out << YAML::BeginMap;
      for (const auto& [key, item] : value.items()) {
        out << YAML::Key << key << YAML::Value;
        emit(out, item);
      }
      out << YAML::EndMap;
      break;
    case json::value_t::array:
      out << YAML::BeginSeq;
      for (const auto& item : value) emit(out, item);
      out << YAML::EndSeq;
      break;
    case json::value_t::string: {
      const auto& text = value.get_ref<const std::string&>();
      // Quote strings that would read back as another type.
      if (!resolvePlainScalar(text).is_string()) {
        out << YAML::DoubleQuoted << text;
      } else {
        out << text;
      }
      break;
    }
    case json::value_t::boolean:
      out << value.get<bool>();
      break;
    case json::value_t::null:
      out << YAML::Null;
      break;
    default:
      out << value.dump();
      break;
  }
}

}  // namespace

Result<json> parseJobFileText(std::string_view text) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    return fail(ErrorCode::kInvalidArgument, where(e.mark) + ": " + e.msg);
  }
  try {
    size_t values = 0;
    return convert(root, 0, values);
  } catch (const YAML::Exception& e) {
    return fail(ErrorCode::kInvalidArgument, where(e.mark) + ": " + e.msg);
  }
}

std::string toYaml(const json& value) {
  YAML::Emitter out;
  emit(out, value);
  std::string text = out.c_str();
  text += '\n';
  return text;
}

}  // namespace skiff::api
