// Crash safety: skiffd (on SQLite, and on a private etcd) is killed with SIGKILL while 32 clients
// submit jobs. Clients retry every request that was not acknowledged, with the same idempotency
// key. After the dust settles every acknowledged job exists exactly once, with the id the client
// was given.

#include <atomic>
#include <chrono>
#include <iostream>
#include <map>
#include <mutex>
#include <thread>

#include <gtest/gtest.h>

#include "skiffd_process.h"
#include "testing/etcd_process.h"

namespace skiff::testing {
namespace {

using nlohmann::json;

json smallJob(int client, int sequence) {
  return {{"applicationName", "crash"},
          {"owner", {{"teamEmail", "team@example.com"}}},
          {"attributes", {{"client", std::to_string(client)}, {"seq", std::to_string(sequence)}}},
          {"container", {{"image", "busybox"}, {"command", {"true"}}}},
          {"batch", {{"size", 1}}}};
}

// Submits from 32 clients while skiffd is killed and restarted, then checks every acknowledged job.
void killDuringSubmissions(SkiffdProcess& skiffd) {
  ASSERT_TRUE(skiffd.start()) << skiffd.error();
  constexpr int kClients = 32;
  constexpr int kKills = 3;
  std::atomic<bool> submitting = true;
  std::mutex mutex;
  std::map<std::string, std::string> acknowledged;  // Idempotency key -> job id.
  std::atomic<int> retries = 0;

  std::string address = skiffd.address();
  std::string token = skiffd.adminToken();
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      client::ClientOptions options;
      options.connectTimeoutMs = 1000;
      options.requestTimeoutMs = 5000;
      client::ApiClient client(address, token, options);
      for (int sequence = 0; submitting.load(); ++sequence) {
        std::string key = "client-" + std::to_string(c) + "-" + std::to_string(sequence);
        json job = smallJob(c, sequence);
        // Retry until acknowledged, exactly as a careful client would.
        for (int attempt = 0; attempt < 400; ++attempt) {
          auto response = client.call("POST", "/v1/jobs", &job, {{"Idempotency-Key", key}});
          if (response && (response->status == 201 || response->status == 200)) {
            std::lock_guard lock(mutex);
            acknowledged[key] = response->body["id"].get<std::string>();
            break;
          }
          retries++;
          std::this_thread::sleep_for(std::chrono::milliseconds(25));
        }
      }
    });
  }

  for (int kill = 0; kill < kKills; ++kill) {
    std::this_thread::sleep_for(std::chrono::milliseconds(700));
    skiffd.kill9();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    ASSERT_TRUE(skiffd.start()) << skiffd.error();
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  submitting = false;
  for (auto& client : clients) client.join();

  // One more crash with nothing in flight, then read everything back.
  skiffd.kill9();
  ASSERT_TRUE(skiffd.start()) << skiffd.error();
  auto api = skiffd.client();
  std::map<std::string, std::vector<std::string>> jobsByKey;
  std::string cursor;
  do {
    auto page = api->call(
        "GET", "/v1/jobs?limit=1000" + (cursor.empty() ? "" : "&cursor=" + cursor), nullptr);
    ASSERT_TRUE(page && page->status == 200);
    for (const auto& job : page->body["items"]) {
      jobsByKey[job["idempotencyKey"].get<std::string>()].push_back(job["id"].get<std::string>());
    }
    cursor = page->body.value("nextCursor", "");
  } while (!cursor.empty());

  ASSERT_GT(acknowledged.size(), 100u) << "too few submissions to mean anything";
  EXPECT_GT(retries.load(), 0) << "no request was interrupted by the kills";
  for (const auto& [key, jobId] : acknowledged) {
    auto it = jobsByKey.find(key);
    ASSERT_NE(it, jobsByKey.end()) << "acknowledged job lost: " << key;
    ASSERT_EQ(it->second.size(), 1u) << "job created twice for " << key;
    EXPECT_EQ(it->second[0], jobId) << key;
  }
  for (const auto& [key, ids] : jobsByKey) {
    EXPECT_EQ(ids.size(), 1u) << "duplicate jobs for " << key;
  }
  std::cout << "acknowledged " << acknowledged.size() << " jobs across " << kKills + 1 << " kills; "
            << retries.load() << " client retries\n";
}

TEST(CrashSafety, EveryAcknowledgedJobSurvivesKill9ExactlyOnce) {
  SkiffdProcess skiffd;
  killDuringSubmissions(skiffd);
}

TEST(CrashSafety, EveryAcknowledgedJobSurvivesKill9ExactlyOnceOnEtcd) {
  EtcdProcess etcd;
  ASSERT_TRUE(etcd.start()) << etcd.error();
  SkiffdProcess skiffd({"--store", etcd.spec()});
  killDuringSubmissions(skiffd);
}

}  // namespace
}  // namespace skiff::testing
