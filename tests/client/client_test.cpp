// ApiClient against a scripted raw-socket HTTP server: what goes on the wire, and how answers,
// streams and failures come back.

#include "client/client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace skiff::client {
namespace {

using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

// Accepts one connection, reads one request, and answers with `pieces`, pausing `gap` between
// them, then closes. The request is available once the server is done.
class OneShotServer {
 public:
  explicit OneShotServer(std::vector<std::string> pieces,
                         std::chrono::milliseconds gap = std::chrono::milliseconds(0))
      : pieces_(std::move(pieces)), gap_(gap) {
    listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(listener_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = 0;
    ::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof(address));
    ::listen(listener_, 1);
    socklen_t length = sizeof(address);
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
    thread_ = std::thread([this] { serve(); });
  }

  ~OneShotServer() {
    if (thread_.joinable()) thread_.join();
    ::close(listener_);
  }

  std::string address() const { return "http://127.0.0.1:" + std::to_string(port_); }

  const std::string& request() {
    if (thread_.joinable()) thread_.join();
    return request_;
  }

 private:
  void serve() {
    pollfd poller{listener_, POLLIN, 0};
    if (::poll(&poller, 1, 5000) <= 0) return;  // The client never came: let the test fail.
    int connection = ::accept(listener_, nullptr, nullptr);
    if (connection < 0) return;
    char buffer[4096];
    size_t bodyStart = std::string::npos;
    size_t contentLength = 0;
    while (true) {
      if (bodyStart != std::string::npos && request_.size() >= bodyStart + contentLength) break;
      pollfd reader{connection, POLLIN, 0};
      if (::poll(&reader, 1, 5000) <= 0) break;
      ssize_t n = ::recv(connection, buffer, sizeof(buffer), 0);
      if (n <= 0) break;
      request_.append(buffer, static_cast<size_t>(n));
      if (bodyStart == std::string::npos) {
        size_t end = request_.find("\r\n\r\n");
        if (end == std::string::npos) continue;
        bodyStart = end + 4;
        std::string head = request_.substr(0, end);
        for (std::string name : {"Content-Length: ", "content-length: "}) {
          if (size_t at = head.find(name); at != std::string::npos) {
            contentLength = std::stoul(head.substr(at + name.size()));
          }
        }
      }
    }
    for (size_t i = 0; i < pieces_.size(); ++i) {
      if (i > 0 && gap_.count() > 0) std::this_thread::sleep_for(gap_);
      if (::send(connection, pieces_[i].data(), pieces_[i].size(), MSG_NOSIGNAL) < 0) break;
    }
    ::shutdown(connection, SHUT_RDWR);
    ::close(connection);
  }

  std::vector<std::string> pieces_;
  std::chrono::milliseconds gap_;
  int listener_ = -1;
  int port_ = 0;
  std::string request_;
  std::thread thread_;
};

std::string httpReply(const std::string& statusLine, const std::string& contentType,
                      const std::string& body) {
  return "HTTP/1.1 " + statusLine + "\r\nContent-Type: " + contentType +
         "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" +
         body;
}

TEST(ApiClientTest, ConnectionRefusedIsUnavailableNamingTheAddress) {
  int port;
  {
    // Find a port nobody listens on: bind, note it, close.
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
    socklen_t length = sizeof(address);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
    port = ntohs(address.sin_port);
    ::close(fd);
  }
  std::string address = "http://127.0.0.1:" + std::to_string(port);
  ApiClient client(address, "tok");
  auto response = client.call("GET", "/v1/jobs", nullptr);
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error().code(), ErrorCode::kUnavailable);
  EXPECT_THAT(response.error().message(), HasSubstr("cannot reach " + address));

  auto stream = client.stream("/v1/events", [](std::string_view) { return true; });
  ASSERT_FALSE(stream);
  EXPECT_EQ(stream.error().code(), ErrorCode::kUnavailable);
}

TEST(ApiClientTest, CallSendsJsonWithTokenAndHeaders) {
  OneShotServer server({httpReply("201 Created", "application/json", R"({"id":"job-1"})")});
  ApiClient client(server.address(), "secret");
  json body = {{"name", "x"}};
  auto response = client.call("POST", "/v1/jobs", &body, {{"Idempotency-Key", "k-1"}});
  ASSERT_TRUE(response) << response.error().message();
  EXPECT_EQ(response->status, 201);
  EXPECT_TRUE(response->ok());
  EXPECT_EQ(response->body, json({{"id", "job-1"}}));
  const std::string& request = server.request();
  EXPECT_THAT(request, HasSubstr("POST /v1/jobs HTTP/1.1\r\n"));
  EXPECT_THAT(request, HasSubstr("Authorization: Bearer secret\r\n"));
  EXPECT_THAT(request, HasSubstr("Idempotency-Key: k-1\r\n"));
  EXPECT_THAT(request, HasSubstr("Content-Type: application/json\r\n"));
  EXPECT_THAT(request, HasSubstr("User-Agent: skiff/" SKIFF_VERSION "\r\n"));
  EXPECT_THAT(request, HasSubstr("\r\n\r\n{\"name\":\"x\"}"));
}

TEST(ApiClientTest, BodylessPostAndPut) {
  OneShotServer post({httpReply("202 Accepted", "application/json", "{}")});
  ApiClient client(post.address(), "");
  auto response = client.call("POST", "/v1/jobs/j/kill", nullptr);
  ASSERT_TRUE(response) << response.error().message();
  EXPECT_EQ(response->status, 202);
  EXPECT_THAT(post.request(), HasSubstr("POST /v1/jobs/j/kill HTTP/1.1\r\n"));
  EXPECT_THAT(post.request(), HasSubstr("Content-Length: 0\r\n"));
  EXPECT_THAT(post.request(), Not(HasSubstr("Authorization")));

  OneShotServer put({httpReply("200 OK", "application/json", "{}")});
  ApiClient putClient(put.address(), "t");
  json body = {{"desired", 3}};
  ASSERT_TRUE(putClient.call("PUT", "/v1/jobs/j/capacity", &body));
  EXPECT_THAT(put.request(), HasSubstr("PUT /v1/jobs/j/capacity HTTP/1.1\r\n"));
  EXPECT_THAT(put.request(), HasSubstr("{\"desired\":3}"));
}

TEST(ApiClientTest, ErrorAnswersAreValues) {
  OneShotServer server({httpReply(
      "400 Bad Request", "application/json",
      R"({"error":{"code":"InvalidArgument","message":"invalid job","details":[{"field":"batch.size","message":"too big"}]}})")});
  ApiClient client(server.address(), "t");
  auto response = client.call("GET", "/v1/jobs", nullptr);
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 400);
  EXPECT_FALSE(response->ok());
  ServerError error = describeServerError(*response);
  EXPECT_EQ(error.code, "InvalidArgument");
  EXPECT_EQ(error.message, "invalid job");
  EXPECT_THAT(error.details, ElementsAre("batch.size: too big"));
}

TEST(ApiClientTest, NonJsonErrorBody) {
  OneShotServer server(
      {httpReply("502 Bad Gateway", "text/html", "<html>Bad Gateway</html>\n<p>nginx</p>")});
  ApiClient client(server.address(), "t");
  auto response = client.call("GET", "/v1/jobs", nullptr);
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 502);
  EXPECT_TRUE(response->body.is_string());
  EXPECT_EQ(describeServerError(*response).message, "HTTP 502: <html>Bad Gateway</html>");
}

TEST(ApiClientTest, StreamHandsOverLinesSplitAcrossWrites) {
  OneShotServer server(
      {"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nConnection: close\r\n\r\n"
       "{\"a\":1}\n{\"b\"",
       ":2}\r\n\n", "{\"c\":3}"},
      std::chrono::milliseconds(20));
  ApiClient client(server.address(), "t");
  std::vector<std::string> lines;
  auto response = client.stream("/v1/events?jobId=j", [&](std::string_view line) {
    lines.emplace_back(line);
    return true;
  });
  ASSERT_TRUE(response) << response.error().message();
  EXPECT_EQ(response->status, 200);
  EXPECT_THAT(lines, ElementsAre("{\"a\":1}", "{\"b\":2}", "{\"c\":3}"));
  EXPECT_THAT(server.request(), HasSubstr("GET /v1/events?jobId=j HTTP/1.1\r\n"));
}

TEST(ApiClientTest, StreamStopsWhenTheHandlerSaysSo) {
  std::vector<std::string> pieces = {
      "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nConnection: close\r\n\r\n"};
  for (int i = 0; i < 40; ++i) pieces.push_back("{\"n\":" + std::to_string(i) + "}\n");
  OneShotServer server(pieces, std::chrono::milliseconds(25));
  ApiClient client(server.address(), "t");
  int seen = 0;
  auto start = std::chrono::steady_clock::now();
  auto response = client.stream("/v1/events", [&](std::string_view) { return ++seen < 2; });
  auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(response) << response.error().message();
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(seen, 2);
  EXPECT_LT(elapsed, std::chrono::milliseconds(500));  // Did not read all 40 pieces (1 s).
}

TEST(ApiClientTest, StreamErrorStatusReturnsTheAnswer) {
  OneShotServer server({httpReply("410 Gone", "application/json",
                                  R"({"error":{"code":"Compacted","message":"too old"}})")});
  ApiClient client(server.address(), "t");
  int lines = 0;
  auto response = client.stream("/v1/events?fromRevision=1", [&](std::string_view) {
    ++lines;
    return true;
  });
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 410);
  EXPECT_EQ(describeServerError(*response).message, "too old");
  EXPECT_EQ(lines, 0);
}

TEST(ApiClientTest, StreamBrokenMidwayIsUnavailableAfterTheLinesSoFar) {
  OneShotServer server(
      {"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n"
       "8\r\n{\"a\":1}\n\r\n",
       "20\r\n{\"trunc"});  // The chunk promises more than arrives before the close.
  ApiClient client(server.address(), "t");
  std::vector<std::string> lines;
  auto response = client.stream("/v1/events", [&](std::string_view line) {
    lines.emplace_back(line);
    return true;
  });
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error().code(), ErrorCode::kUnavailable);
  EXPECT_THAT(response.error().message(), HasSubstr("lost the connection to " + server.address()));
  EXPECT_THAT(lines, ElementsAre("{\"a\":1}"));
}

TEST(DescribeServerErrorTest, ToleratesOddBodies) {
  ApiResponse odd{400,
                  {{"error", {{"message", "bad\x1b[2J"}, {"details", {{{"field", 3}}, "x"}}}}}};
  ServerError error = describeServerError(odd);
  EXPECT_EQ(error.message, "bad?[2J");
  EXPECT_THAT(error.details, ElementsAre(""));
  EXPECT_EQ(describeServerError(ApiResponse{500, nullptr}).message, "HTTP 500");
  EXPECT_EQ(describeServerError(ApiResponse{503, {{"error", {{"code", "Unavailable"}}}}}).message,
            "HTTP 503 Unavailable");
}

TEST(ApiClientTest, RejectsHeaderInjection) {
  ApiClient client("http://127.0.0.1:1", "t");
  auto response = client.call("POST", "/v1/jobs", nullptr, {{"Idempotency-Key", "a\r\nX-Evil: 1"}});
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error().code(), ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace skiff::client
