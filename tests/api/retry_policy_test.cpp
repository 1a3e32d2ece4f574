// RetryPolicy::delayBeforeRetryMs: how long a task waits before retry number N.

#include <cstdint>
#include <limits>

#include <gtest/gtest.h>

#include "api/job.h"

namespace skiff::api {
namespace {

constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();

RetryPolicy immediate(int64_t retries) {
  return {RetryPolicy::Kind::kImmediate, retries, 0, 0, 0};
}

RetryPolicy delayed(int64_t initialDelayMs, int64_t delayMs) {
  return {RetryPolicy::Kind::kDelayed, 10, initialDelayMs, delayMs, 0};
}

RetryPolicy exponential(int64_t initialDelayMs, int64_t maxDelayIntervalMs) {
  return {RetryPolicy::Kind::kExponentialBackOff, 1000, initialDelayMs, 0, maxDelayIntervalMs};
}

TEST(RetryPolicyTest, ImmediateNeverWaits) {
  RetryPolicy policy = immediate(3);
  for (int64_t retry : {1, 2, 3, 4, 200}) {
    EXPECT_EQ(policy.delayBeforeRetryMs(retry), 0) << "retry " << retry;
  }
}

TEST(RetryPolicyTest, DelayedWaitsInitialDelayThenDelayMs) {
  RetryPolicy policy = delayed(100, 2000);
  EXPECT_EQ(policy.delayBeforeRetryMs(1), 100);
  EXPECT_EQ(policy.delayBeforeRetryMs(2), 2000);
  EXPECT_EQ(policy.delayBeforeRetryMs(3), 2000);
  EXPECT_EQ(policy.delayBeforeRetryMs(200), 2000);
}

TEST(RetryPolicyTest, DelayedWithoutInitialDelayRetriesFirstAtOnce) {
  RetryPolicy policy = delayed(0, 5000);
  EXPECT_EQ(policy.delayBeforeRetryMs(1), 0);
  EXPECT_EQ(policy.delayBeforeRetryMs(2), 5000);
}

TEST(RetryPolicyTest, RetryNumbersBelowOneCountAsTheFirstRetry) {
  EXPECT_EQ(delayed(100, 2000).delayBeforeRetryMs(0), 100);
  EXPECT_EQ(delayed(100, 2000).delayBeforeRetryMs(-5), 100);
  EXPECT_EQ(exponential(1000, 60000).delayBeforeRetryMs(0), 1000);
  EXPECT_EQ(exponential(1000, 60000).delayBeforeRetryMs(-1), 1000);
}

TEST(RetryPolicyTest, ExponentialDoublesFromTheInitialDelay) {
  RetryPolicy policy = exponential(1000, 60000);
  EXPECT_EQ(policy.delayBeforeRetryMs(1), 1000);
  EXPECT_EQ(policy.delayBeforeRetryMs(2), 2000);
  EXPECT_EQ(policy.delayBeforeRetryMs(3), 4000);
  EXPECT_EQ(policy.delayBeforeRetryMs(4), 8000);
  EXPECT_EQ(policy.delayBeforeRetryMs(5), 16000);
  EXPECT_EQ(policy.delayBeforeRetryMs(6), 32000);
}

TEST(RetryPolicyTest, ExponentialIsCappedAtTheMaxInterval) {
  RetryPolicy policy = exponential(1000, 60000);
  EXPECT_EQ(policy.delayBeforeRetryMs(7), 60000);  // 64000 capped.
  EXPECT_EQ(policy.delayBeforeRetryMs(8), 60000);
  EXPECT_EQ(policy.delayBeforeRetryMs(200), 60000);
}

TEST(RetryPolicyTest, ExponentialWithInitialEqualToMaxIsConstant) {
  RetryPolicy policy = exponential(5000, 5000);
  for (int64_t retry : {1, 2, 10, 200}) EXPECT_EQ(policy.delayBeforeRetryMs(retry), 5000);
}

TEST(RetryPolicyTest, ExponentialNeverDecreasesNorExceedsTheCap) {
  RetryPolicy policy = ServiceSpec{}.retryPolicy;  // The service default: 1 s doubling to 60 s.
  int64_t previous = 0;
  for (int64_t retry = 1; retry <= 200; ++retry) {
    int64_t delay = policy.delayBeforeRetryMs(retry);
    EXPECT_GE(delay, previous) << "retry " << retry;
    EXPECT_LE(delay, policy.maxDelayIntervalMs) << "retry " << retry;
    previous = delay;
  }
  EXPECT_EQ(previous, 60000);
}

TEST(RetryPolicyTest, ExponentialAtTheValidationLimitsDoesNotOverflow) {
  RetryPolicy policy = exponential(1, Limits::kMaxDelayMs);
  EXPECT_EQ(policy.delayBeforeRetryMs(27), int64_t{1} << 26);
  EXPECT_EQ(policy.delayBeforeRetryMs(28), Limits::kMaxDelayMs);  // 2^27 > 86400000.
  EXPECT_EQ(policy.delayBeforeRetryMs(200), Limits::kMaxDelayMs);
  EXPECT_EQ(exponential(Limits::kMaxDelayMs, Limits::kMaxDelayMs).delayBeforeRetryMs(200),
            Limits::kMaxDelayMs);
}

TEST(RetryPolicyTest, ExponentialForTheLastAllowedRetryIsCappedAndQuick) {
  RetryPolicy policy = exponential(1000, 60000);
  EXPECT_EQ(policy.delayBeforeRetryMs(Limits::kMaxRetries), 60000);
  EXPECT_EQ(policy.delayBeforeRetryMs(kInt64Max), 60000);
}

// The struct is public, so a policy that never went through validation must not overflow either:
// 2^199 ms saturates at the cap instead of wrapping around.
TEST(RetryPolicyTest, ExponentialWithAnUnboundedCapSaturatesInsteadOfOverflowing) {
  RetryPolicy policy = exponential(1, kInt64Max);
  EXPECT_EQ(policy.delayBeforeRetryMs(63), int64_t{1} << 62);
  EXPECT_EQ(policy.delayBeforeRetryMs(64), kInt64Max);
  EXPECT_EQ(policy.delayBeforeRetryMs(200), kInt64Max);
  EXPECT_EQ(exponential(3, kInt64Max).delayBeforeRetryMs(200), kInt64Max);
}

}  // namespace
}  // namespace skiff::api
