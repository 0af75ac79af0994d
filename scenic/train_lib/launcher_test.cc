#include "scenic/train_lib/launcher.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <fstream>
#include <future>
#include <thread>

#include "scenic/common_lib/testing.h"

namespace scenic::train {
namespace {

std::string read_text(const std::string& path) {
  std::ifstream f(path);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

bool wait_for_file(const std::string& path, double seconds) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    if (::access(path.c_str(), F_OK) == 0) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

LaunchOptions two(int port = 29500) {
  LaunchOptions o;
  o.nproc_per_node = 2;
  o.master_port = port;
  o.grace_s = 1;
  return o;
}

TEST(LauncherTest, ChildrenGetTorchrunVariables) {
  testing::TempDir dir;
  const std::string cmd =
      "echo \"$RANK $WORLD_SIZE $LOCAL_RANK $LOCAL_WORLD_SIZE $GROUP_RANK $MASTER_ADDR $MASTER_PORT\" > " + dir.path() +
      "/env.$RANK";
  EXPECT_EQ(launch(two(12345), {"sh", "-c", cmd}), 0);
  EXPECT_EQ(read_text(dir.file("env.0")), "0 2 0 2 0 127.0.0.1 12345\n");
  EXPECT_EQ(read_text(dir.file("env.1")), "1 2 1 2 0 127.0.0.1 12345\n");
}

TEST(LauncherTest, SecondNodeRanks) {
  testing::TempDir dir;
  LaunchOptions o = two(23456);
  o.nnodes = 2;
  o.node_rank = 1;
  o.master_addr = "node0";
  // RANK = node_rank * nproc_per_node + local rank = 2, 3.
  EXPECT_EQ(launch(o, {"sh", "-c", "echo \"$RANK $WORLD_SIZE $LOCAL_RANK $MASTER_ADDR\" > " + dir.path() + "/env.$LOCAL_RANK"}), 0);
  EXPECT_EQ(read_text(dir.file("env.0")), "2 4 0 node0\n");
  EXPECT_EQ(read_text(dir.file("env.1")), "3 4 1 node0\n");
}

// Rank 1 exits 3 once rank 0 runs; rank 0 (a 30 s sleep) is killed and the launcher
// returns 3 at once. The time bound only shows that nobody waited for the sleep.
TEST(LauncherTest, FailureStopsTheOthersAndPropagates) {
  testing::TempDir dir;
  const std::string pid_file = dir.file("pid");
  const std::string cmd = "if [ \"$RANK\" = 1 ]; then while [ ! -s " + pid_file +
                          " ]; do sleep 0.02; done; exit 3; fi; echo $$ > " + pid_file + "; exec sleep 30";
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(launch(two(), {"sh", "-c", cmd}), 3);
  EXPECT_LT(seconds_since(t0), 20);
  const pid_t sleeper = std::stoi(read_text(pid_file));
  EXPECT_EQ(::kill(sleeper, 0), -1);  // reaped: no such process any more
  EXPECT_EQ(errno, ESRCH);
}

// A child that ignores SIGTERM is killed with SIGKILL after the grace period.
TEST(LauncherTest, SigkillAfterGracePeriod) {
  testing::TempDir dir;
  const std::string ready = dir.file("ready");
  const std::string cmd = "if [ \"$RANK\" = 1 ]; then while [ ! -e " + ready + " ]; do sleep 0.02; done; exit 4; fi; "
                          "trap '' TERM; touch " + ready + "; exec sleep 30";
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(launch(two(), {"sh", "-c", cmd}), 4);
  EXPECT_LT(seconds_since(t0), 20);
}

TEST(LauncherTest, AllSucceedReturnsZeroAndOneFailureIsItsStatus) {
  EXPECT_EQ(launch(two(), {"sh", "-c", "exit 0"}), 0);
  EXPECT_EQ(launch(two(), {"sh", "-c", "[ \"$RANK\" = 0 ] || exit 5"}), 5);
  // Killed by a signal: 128 + signal number, as a shell reports it.
  EXPECT_EQ(launch(two(), {"sh", "-c", "[ \"$RANK\" = 0 ] || kill -KILL $$"}), 128 + SIGKILL);
}

// SIGTERM to the launcher reaches every child once; their status comes back.
TEST(LauncherTest, ForwardsSigterm) {
  testing::TempDir dir;
  const std::string cmd = "trap 'echo $RANK > " + dir.path() + "/got.$RANK; exit 7' TERM; touch " + dir.path() +
                          "/ready.$RANK; sleep 30 & wait";
  auto result = std::async(std::launch::async, [&] { return launch(two(), {"sh", "-c", cmd}); });
  ASSERT_TRUE(wait_for_file(dir.file("ready.0"), 20));
  ASSERT_TRUE(wait_for_file(dir.file("ready.1"), 20));
  // The launcher's handler is installed before its children start, so this signal
  // (to the test process) is caught and forwarded, not fatal.
  ::kill(::getpid(), SIGTERM);
  EXPECT_EQ(result.get(), 7);
  EXPECT_EQ(read_text(dir.file("got.0")), "0\n");
  EXPECT_EQ(read_text(dir.file("got.1")), "1\n");
}

TEST(LauncherTest, Errors) {
  EXPECT_CONTAINS(testing::error_of([] { launch(two(), {}); }), "no command given");
  LaunchOptions zero = two();
  zero.nproc_per_node = 0;
  EXPECT_CONTAINS(testing::error_of([&] { launch(zero, {"true"}); }), "--nproc_per_node must be >= 1");
  LaunchOptions bad_node = two();
  bad_node.node_rank = 1;
  EXPECT_CONTAINS(testing::error_of([&] { launch(bad_node, {"true"}); }), "--node_rank 1 is not in [0, 1)");
  EXPECT_CONTAINS(testing::error_of([] { launch(two(), {"/nonexistent/scenic-xyz"}); }),
                  "cannot start '/nonexistent/scenic-xyz'");
}

}  // namespace
}  // namespace scenic::train
