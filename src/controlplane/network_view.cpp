#include "controlplane/network_view.h"

#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "common/async.h"
#include "common/log.h"
#include "controlplane/records.h"

namespace skiff::controlplane {
namespace {

using json = nlohmann::json;
namespace asio = boost::asio;

api::SecurityGroup defaultGroup() {
  api::SecurityGroup group;
  group.name = "default";
  group.description = "all traffic between members of this group";
  api::SecurityGroupRule rule;
  rule.protocol = api::Protocol::kAll;
  rule.sourceGroup = "default";
  group.ingress.push_back(rule);
  return group;
}

std::string groupKeyOf(const std::string& name) {
  return std::string(kSecurityGroupsPrefix) + name;
}

// The job of a task write that carries an address (stored tasks carry "ip" only once they have
// one), or empty.
std::string_view jobOfAddressedTask(std::string_view key, const std::string& value) {
  if (!key.starts_with(kJobsPrefix)) return {};
  std::string_view path = key.substr(kJobsPrefix.size());
  auto slash = path.find("/t/");
  if (slash == std::string_view::npos || value.find(R"("ip")") == std::string::npos) return {};
  return path.substr(0, slash);
}

}  // namespace

Result<std::unique_ptr<NetworkView>> NetworkView::start(store::Store& store) {
  std::unique_ptr<NetworkView> view(new NetworkView(store));
  store::Txn seed;
  seed.compares.push_back(store::Compare::notExists(groupKeyOf("default")));
  seed.onSuccess.push_back(store::Op::put(groupKeyOf("default"), toJson(defaultGroup()).dump()));
  if (auto seeded = store.commit(std::move(seed)); !seeded) {
    return std::unexpected(seeded.error().wrap("default security group"));
  }
  auto scanned = store.scanPrefix("/", [&](const store::KeyValue& kv) {
    std::lock_guard lock(view->mutex_);
    view->applyLocked(kv.key, &kv.value);
  });
  if (!scanned) return std::unexpected(scanned.error().wrap("network view"));
  std::set<std::string> jobIds;
  for (const auto& [id, task] : view->tasks_) jobIds.insert(task.jobId);
  view->resolveJobGroups(std::move(jobIds));
  view->revision_ = *scanned;
  NetworkView* raw = view.get();
  auto watch = store.watch(
      "/", *scanned + 1, [raw](const std::vector<store::Event>& events) { raw->onEvents(events); });
  if (!watch) return std::unexpected(watch.error().wrap("network view watch"));
  view->watch_ = std::move(*watch);
  return view;
}

NetworkView::~NetworkView() {
  watch_.reset();
}

bool NetworkView::applyLocked(const std::string& key, const std::string* value) {
  std::string_view rest = key;
  if (rest.starts_with(kSecurityGroupsPrefix)) {
    std::string name(rest.substr(kSecurityGroupsPrefix.size()));
    if (value == nullptr) return groups_.erase(name) > 0;
    auto group = api::validateSecurityGroup(json::parse(*value, nullptr, false));
    if (!group) return false;
    groups_[name] = std::move(*group);
    return true;
  }
  if (rest.starts_with(kNodesPrefix)) {
    std::string id(rest.substr(kNodesPrefix.size()));
    if (value == nullptr) return nodes_.erase(id) > 0;
    auto node = nodeFromStored(*value, 0);
    if (!node) return false;
    NodeEntry entry{node->addressBlock, ""};
    if (node->attributes.is_object() && node->attributes.contains("hostAddress") &&
        node->attributes["hostAddress"].is_string()) {
      entry.hostAddress = node->attributes["hostAddress"].get<std::string>();
    }
    auto [it, inserted] = nodes_.try_emplace(id, entry);
    if (inserted) return true;
    if (it->second == entry) return false;
    it->second = entry;
    return true;
  }
  if (!rest.starts_with(kJobsPrefix)) return false;
  std::string_view path = rest.substr(kJobsPrefix.size());
  auto slash = path.find("/t/");
  if (slash == std::string_view::npos) {
    // Job writes matter only once the job is deleted; its groups are read when needed.
    if (value != nullptr) return false;
    return jobGroups_.erase(std::string(path)) > 0;
  }
  std::string jobId(path.substr(0, slash));
  std::string taskId(path.substr(slash + 3));
  std::string ip;
  // Stored tasks carry "ip" only once they have one: most task writes (placement, status
  // reports) need no parse here.
  if (value != nullptr && value->find(R"("ip")") != std::string::npos) {
    auto task = taskFromStored(*value, 0);
    if (task && !task->finished()) ip = task->ip;
  }
  auto it = tasks_.find(taskId);
  if (ip.empty()) {
    if (it == tasks_.end()) return false;
    tasks_.erase(it);
    return true;
  }
  if (it != tasks_.end() && it->second.ip == ip) return false;
  tasks_[taskId] = {jobId, ip};
  return true;
}

void NetworkView::resolveJobGroups(std::set<std::string> jobIds) {
  {
    std::lock_guard lock(mutex_);
    std::erase_if(jobIds, [&](const std::string& id) { return jobGroups_.contains(id); });
  }
  std::map<std::string, std::vector<std::string>> read;
  for (const std::string& jobId : jobIds) {
    // A job that is gone, or unreadable, has no members to add.
    auto stored = store_.get(jobKey(jobId));
    if (!stored || !*stored) continue;
    auto groups = securityGroupsOfStoredJob((*stored)->value);
    if (!groups) {
      log::warn("network view: unreadable job", {{"jobId", jobId}});
      continue;
    }
    read.emplace(jobId, std::move(*groups));
  }
  std::lock_guard lock(mutex_);
  jobGroups_.merge(read);
}

void NetworkView::onEvents(const std::vector<store::Event>& events) {
  std::set<std::string> jobIds;
  for (const store::Event& event : events) {
    if (event.kind != store::Event::Kind::kPut) continue;
    std::string_view jobId = jobOfAddressedTask(event.kv.key, event.kv.value);
    if (!jobId.empty()) jobIds.emplace(jobId);
  }
  if (!jobIds.empty()) resolveJobGroups(std::move(jobIds));
  std::set<std::shared_ptr<asio::steady_timer>> wake;
  {
    std::lock_guard lock(mutex_);
    bool changed = false;
    for (const store::Event& event : events) {
      bool put = event.kind == store::Event::Kind::kPut;
      if (applyLocked(event.kv.key, put ? &event.kv.value : nullptr)) {
        changed = true;
        revision_ = event.kv.modRevision;
      }
    }
    if (!changed) return;
    wake.swap(waiters_);
  }
  for (const auto& timer : wake) {
    asio::post(timer->get_executor(), [timer] { timer->cancel(); });
  }
}

json NetworkView::viewNow() const {
  std::lock_guard lock(mutex_);
  json groups = json::array();
  for (const auto& [name, group] : groups_) groups.push_back(toJson(group));
  json members = json::object();
  for (const auto& [taskId, task] : tasks_) {
    auto job = jobGroups_.find(task.jobId);
    if (job == jobGroups_.end()) continue;
    for (const std::string& group : job->second) members[group].push_back(task.ip);
  }
  json nodes = json::array();
  for (const auto& [id, node] : nodes_) {
    nodes.push_back({{"id", id}, {"block", node.block}, {"hostAddress", node.hostAddress}});
  }
  return {{"revision", revision_},
          {"securityGroups", std::move(groups)},
          {"members", std::move(members)},
          {"nodes", std::move(nodes)}};
}

int64_t NetworkView::revision() const {
  std::lock_guard lock(mutex_);
  return revision_;
}

asio::awaitable<json> NetworkView::view(int64_t afterRevision, std::chrono::milliseconds wait) {
  auto executor = co_await asio::this_coro::executor;
  auto timer = std::make_shared<asio::steady_timer>(executor, wait);
  {
    std::lock_guard lock(mutex_);
    if (revision_ > afterRevision || wait.count() <= 0) {
      timer.reset();
    } else {
      waiters_.insert(timer);
    }
  }
  if (timer) {
    boost::system::error_code ec;
    co_await timer->async_wait(asio::redirect_error(asio::use_awaitable, ec));
    std::lock_guard lock(mutex_);
    waiters_.erase(timer);
  }
  co_return viewNow();
}

asio::awaitable<Result<json>> NetworkView::write(api::SecurityGroup group, bool mustBeNew) {
  std::string key = groupKeyOf(group.name);
  store::Txn txn;
  if (mustBeNew) txn.compares.push_back(store::Compare::notExists(key));
  txn.onSuccess.push_back(store::Op::put(key, toJson(group).dump()));
  Completion<Result<store::TxnResult>> done;
  store_.commitAsync(std::move(txn),
                     [done](Result<store::TxnResult> result) { done.set(std::move(result)); });
  auto result = co_await done.wait();
  if (!result) co_return std::unexpected(result.error().wrap("saving security group"));
  if (!result->succeeded) {
    co_return fail(ErrorCode::kAlreadyExists, "security group " + group.name + " exists");
  }
  json out = toJson(group);
  out["revision"] = result->revision;
  co_return out;
}

Result<bool> NetworkView::exists(const std::string& name) const {
  // Most submissions name groups the view already holds; only a miss may be a group created a
  // moment ago that the watch has not delivered yet, so only a miss reads the store.
  {
    std::lock_guard lock(mutex_);
    if (groups_.contains(name)) return true;
  }
  auto found = store_.get(groupKeyOf(name));
  if (!found) return std::unexpected(found.error().wrap("reading security group " + name));
  return found->has_value();
}

asio::awaitable<Result<json>> NetworkView::create(api::SecurityGroup group) {
  co_return co_await write(std::move(group), true);
}

asio::awaitable<Result<json>> NetworkView::put(api::SecurityGroup group) {
  co_return co_await write(std::move(group), false);
}

asio::awaitable<Result<void>> NetworkView::remove(std::string name) {
  std::string key = groupKeyOf(name);
  store::Txn txn;
  txn.compares.push_back(store::Compare::exists(key));
  txn.onSuccess.push_back(store::Op::del(key));
  Completion<Result<store::TxnResult>> done;
  store_.commitAsync(std::move(txn),
                     [done](Result<store::TxnResult> result) { done.set(std::move(result)); });
  auto result = co_await done.wait();
  if (!result) co_return std::unexpected(result.error().wrap("deleting security group"));
  if (!result->succeeded)
    co_return fail(ErrorCode::kNotFound, "security group " + name + " not found");
  co_return Result<void>{};
}

Result<json> NetworkView::get(const std::string& name) const {
  std::lock_guard lock(mutex_);
  auto it = groups_.find(name);
  if (it == groups_.end())
    return fail(ErrorCode::kNotFound, "security group " + name + " not found");
  return toJson(it->second);
}

json NetworkView::list() const {
  std::lock_guard lock(mutex_);
  json items = json::array();
  for (const auto& [name, group] : groups_) items.push_back(toJson(group));
  return {{"items", std::move(items)}};
}

}  // namespace skiff::controlplane
