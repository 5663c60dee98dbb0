// Unit tests of loader/app/status's pure part: json_string, format_json and format_text over a hand-filled Status.
#include <doctest/doctest.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "bpf/sockredir_shared.h"
#include "loader/app/status.hpp"

using namespace sockredir::app;

namespace {

// A strict JSON reader (RFC 8259) for checking what status prints: any defect throws, with where it is.
struct Json {
    enum class Kind { Null, Bool, Number, String, Array, Object } kind = Kind::Null;
    bool boolean = false;
    std::string text;                                  // a number's digits, or a string's decoded bytes
    std::vector<Json> items;                           // an array's
    std::vector<std::pair<std::string, Json>> members; // an object's, in order

    const Json& at(const std::string& key) const
    {
        for (const auto& [k, v] : members)
            if (k == key)
                return v;
        throw std::runtime_error("no member '" + key + "'");
    }
    bool has(const std::string& key) const
    {
        for (const auto& [k, v] : members)
            if (k == key)
                return true;
        return false;
    }
};

class JsonReader {
public:
    explicit JsonReader(std::string_view in) : in_(in) {}

    // The one value of the input, with nothing but whitespace around it.
    Json document()
    {
        Json v = value();
        skip_space();
        if (pos_ != in_.size())
            fail("text after the value");
        return v;
    }

private:
    [[noreturn]] void fail(const std::string& what) const
    {
        throw std::runtime_error("JSON: " + what + " at offset " + std::to_string(pos_));
    }
    void skip_space()
    {
        while (pos_ < in_.size() && (in_[pos_] == ' ' || in_[pos_] == '\t' || in_[pos_] == '\n' || in_[pos_] == '\r'))
            ++pos_;
    }
    char peek() const { return pos_ < in_.size() ? in_[pos_] : '\0'; }
    void expect(char c)
    {
        if (peek() != c)
            fail(std::string("expected '") + c + "'");
        ++pos_;
    }
    void literal(std::string_view word)
    {
        if (in_.substr(pos_, word.size()) != word)
            fail("bad literal");
        pos_ += word.size();
    }
    bool digit() const { return peek() >= '0' && peek() <= '9'; }

    Json value()
    {
        skip_space();
        Json v;
        switch (peek()) {
        case '{':
            v.kind = Json::Kind::Object;
            ++pos_;
            skip_space();
            if (peek() == '}') {
                ++pos_;
                return v;
            }
            for (;;) {
                skip_space();
                std::string key = string();
                skip_space();
                expect(':');
                v.members.emplace_back(std::move(key), value());
                skip_space();
                if (peek() == '}') {
                    ++pos_;
                    return v;
                }
                expect(',');
            }
        case '[':
            v.kind = Json::Kind::Array;
            ++pos_;
            skip_space();
            if (peek() == ']') {
                ++pos_;
                return v;
            }
            for (;;) {
                v.items.push_back(value());
                skip_space();
                if (peek() == ']') {
                    ++pos_;
                    return v;
                }
                expect(',');
            }
        case '"':
            v.kind = Json::Kind::String;
            v.text = string();
            return v;
        case 't':
            literal("true");
            v.kind = Json::Kind::Bool;
            v.boolean = true;
            return v;
        case 'f':
            literal("false");
            v.kind = Json::Kind::Bool;
            return v;
        case 'n':
            literal("null");
            return v;
        default:
            v.kind = Json::Kind::Number;
            v.text = number();
            return v;
        }
    }

    std::string number()
    {
        const size_t start = pos_;
        if (peek() == '-')
            ++pos_;
        if (peek() == '0')
            ++pos_;
        else if (digit())
            while (digit())
                ++pos_;
        else
            fail("bad number");
        if (peek() == '.') {
            ++pos_;
            if (!digit())
                fail("bad fraction");
            while (digit())
                ++pos_;
        }
        if (peek() == 'e' || peek() == 'E') {
            ++pos_;
            if (peek() == '+' || peek() == '-')
                ++pos_;
            if (!digit())
                fail("bad exponent");
            while (digit())
                ++pos_;
        }
        return std::string(in_.substr(start, pos_ - start));
    }

    std::string string()
    {
        expect('"');
        std::string out;
        for (;;) {
            if (pos_ >= in_.size())
                fail("unterminated string");
            const char c = in_[pos_++];
            if (c == '"')
                return out;
            if (static_cast<unsigned char>(c) < 0x20)
                fail("raw control character in a string");
            if (c != '\\') {
                out += c;
                continue;
            }
            const char e = peek();
            ++pos_;
            switch (e) {
            case '"':
            case '\\':
            case '/':
                out += e;
                break;
            case 'b':
                out += '\b';
                break;
            case 'f':
                out += '\f';
                break;
            case 'n':
                out += '\n';
                break;
            case 'r':
                out += '\r';
                break;
            case 't':
                out += '\t';
                break;
            case 'u': {
                unsigned cp = 0;
                for (int i = 0; i < 4; ++i) {
                    const char h = peek();
                    ++pos_;
                    cp <<= 4;
                    if (h >= '0' && h <= '9')
                        cp |= static_cast<unsigned>(h - '0');
                    else if (h >= 'a' && h <= 'f')
                        cp |= static_cast<unsigned>(h - 'a' + 10);
                    else if (h >= 'A' && h <= 'F')
                        cp |= static_cast<unsigned>(h - 'A' + 10);
                    else
                        fail("bad \\u escape");
                }
                // status escapes control characters, and writes U+FFFD for what is not UTF-8.
                if (cp >= 0x80 && cp != 0xfffd)
                    fail("\\u escape above 0x7f other than U+FFFD");
                out += cp == 0xfffd ? std::string("\xef\xbf\xbd") : std::string(1, static_cast<char>(cp));
                break;
            }
            default:
                fail("bad escape");
            }
        }
    }

    std::string_view in_;
    size_t pos_ = 0;
};

Json parse_json(const std::string& text)
{
    return JsonReader(text).document();
}

// A status as read_status fills it for a live attachment, with a value in every field.
Status attached_status()
{
    Status s;
    s.attached = true;
    s.pin_dir = "/sys/fs/bpf/sockredir";
    s.cgroup = "/sys/fs/cgroup/test";
    s.cgroup_id = 42;
    s.link_id = 7;
    s.sockops_id = 11;
    s.msg_id = 12;
    s.sock_hash_id = 21;
    s.counters_id = 22;
    s.max_sockets = 65536;
    s.sockets = 3;
    s.ports = "80,443,8000-8100";
    s.observer = SOCKREDIR_PROG_OBSERVE_TP;
    for (int i = 0; i < SOCKREDIR_COUNTER_MAX; ++i)
        s.counters[i] = 100 + static_cast<uint64_t>(i);
    return s;
}

std::vector<std::string> lines_of(const std::string& text)
{
    std::vector<std::string> lines;
    size_t start = 0;
    while (start < text.size()) {
        const auto end = text.find('\n', start);
        REQUIRE(end != std::string::npos); // every line ends in '\n'
        lines.push_back(text.substr(start, end - start));
        start = end + 1;
    }
    return lines;
}

} // namespace

TEST_CASE("the test's JSON reader refuses what is not JSON")
{
    for (const char* bad : {"", "{", "{\"a\":}", "{\"a\":1,}", "[1,]", "{\"a\" 1}", "\"a", "\"\x01\"", "\"\\x\"", "01",
                            "1.", "-", "tru", "{} {}", "{\"a\":1}x", "\"\\u00zz\""}) {
        CAPTURE(bad);
        CHECK_THROWS(parse_json(bad));
    }
    CHECK(parse_json(" {\"a\":[1,-2.5e3,true,false,null,\"x\"]}\n").at("a").items.size() == 6);
}

TEST_CASE("json_string quotes and escapes quotes, backslashes and control characters")
{
    CHECK(json_string("") == "\"\"");
    CHECK(json_string("plain /path-1_2.3") == "\"plain /path-1_2.3\"");
    CHECK(json_string("a\"b") == "\"a\\\"b\"");
    CHECK(json_string("a\\b") == "\"a\\\\b\"");
    CHECK(json_string("\\\"") == "\"\\\\\\\"\"");
    CHECK(json_string("line\nnext") == "\"line\\u000anext\"");
    CHECK(json_string("\t\r\b\f") == "\"\\u0009\\u000d\\u0008\\u000c\"");
    CHECK(json_string(std::string("\x01\x1f", 2)) == "\"\\u0001\\u001f\"");
    CHECK(json_string(std::string(1, '\0')) == "\"\\u0000\"");
    // Not control characters: DEL and the bytes of UTF-8 pass as they are.
    CHECK(json_string("\x7f") == "\"\x7f\"");
    CHECK(json_string("caf\xc3\xa9") == "\"caf\xc3\xa9\"");
    CHECK(json_string("\xe2\x82\xac \xf0\x9f\x98\x80") == "\"\xe2\x82\xac \xf0\x9f\x98\x80\"");
}

TEST_CASE("json_string turns what is not UTF-8 into U+FFFD: a command cut inside a character stays valid JSON")
{
    // A 2-byte character cut after its first byte (comm is cut at 15 bytes), a stray continuation byte, an
    // overlong encoding, a surrogate, a code point past U+10FFFF, a 3-byte sequence cut short.
    CHECK(json_string("abc\xc3") == "\"abc\\ufffd\"");
    CHECK(json_string("\x80x") == "\"\\ufffdx\"");
    CHECK(json_string("\xc0\xaf") == "\"\\ufffd\\ufffd\"");
    CHECK(json_string("\xed\xa0\x80") == "\"\\ufffd\\ufffd\\ufffd\"");
    CHECK(json_string("\xf4\x90\x80\x80") == "\"\\ufffd\\ufffd\\ufffd\\ufffd\"");
    CHECK(json_string("\xe2\x82") == "\"\\ufffd\\ufffd\"");
    for (int b = 0x80; b < 0x100; ++b) {
        CAPTURE(b);
        const Json v = parse_json(json_string(std::string(1, static_cast<char>(b))));
        CHECK(v.text == "\xef\xbf\xbd");
    }
}

TEST_CASE("json_string of every ASCII byte reads back as that byte")
{
    for (int b = 0; b < 0x80; ++b) {
        CAPTURE(b);
        const std::string one(1, static_cast<char>(b));
        const Json v = parse_json(json_string(one));
        REQUIRE(v.kind == Json::Kind::String);
        CHECK(v.text == one);
    }
}

TEST_CASE("status --json without an attachment is attached false and the pin dir, nothing else")
{
    Status s;
    s.pin_dir = "/sys/fs/bpf/sockredir";
    CHECK(format_json(s) == "{\"attached\":false,\"pin_dir\":\"/sys/fs/bpf/sockredir\"}\n");
    const Json v = parse_json(format_json(s));
    CHECK(v.members.size() == 2);
}

TEST_CASE("status without an attachment is one line naming the pin dir")
{
    Status s;
    s.pin_dir = "/sys/fs/bpf/other";
    CHECK(format_text(s) == "not attached (no pins in /sys/fs/bpf/other)\n");
}

TEST_CASE("status --json of an attachment is valid JSON with every field")
{
    const Status s = attached_status();
    const std::string out = format_json(s);
    CHECK(out.back() == '\n');
    CHECK(out.find('\n') == out.size() - 1); // one line
    const Json v = parse_json(out);
    REQUIRE(v.kind == Json::Kind::Object);
    CHECK(v.at("attached").boolean);
    CHECK(v.at("pin_dir").text == "/sys/fs/bpf/sockredir");
    CHECK_FALSE(v.at("draining").boolean);
    CHECK(v.at("cgroup").text == "/sys/fs/cgroup/test");
    CHECK(v.at("cgroup_id").text == "42");
    CHECK(v.at("link_id").text == "7");
    CHECK(v.at("programs").at("sock_ops").text == "11");
    CHECK(v.at("programs").at("sk_msg").text == "12");
    CHECK(v.at("maps").at("sock_hash").text == "21");
    CHECK(v.at("maps").at("counters").text == "22");
    CHECK(v.at("sockets").text == "3");
    CHECK(v.at("max_sockets").text == "65536");
    CHECK(v.at("ports").text == "80,443,8000-8100");
    // No self-test recorded: two empty arrays.
    CHECK(v.at("defects").kind == Json::Kind::Array);
    CHECK(v.at("defects").items.empty());
    CHECK(v.at("defects_probed").items.empty());
    CHECK(v.at("run_stats").at("sock_ops").at("runs").text == "0");
    CHECK(v.at("run_stats").at("sk_msg").at("run_time_ns").text == "0");
    const Json& counters = v.at("counters");
    REQUIRE(counters.members.size() == SOCKREDIR_COUNTER_MAX);
    for (int i = 0; i < SOCKREDIR_COUNTER_MAX; ++i) {
        CAPTURE(i);
        CHECK(counters.members[static_cast<size_t>(i)].first == counter_name(i));
        CHECK(counters.members[static_cast<size_t>(i)].second.text == std::to_string(100 + i));
    }
}

TEST_CASE("status --json prints exactly the documented object")
{
    Status s = attached_status();
    s.draining = true;
    s.sockops_runs = 5;
    s.sockops_run_ns = 500;
    s.msg_runs = 10;
    s.msg_run_ns = 1234;
    s.defects =
        SOCKREDIR_DEFECT_BLOCKING_READ_EAGAIN |
        ((SOCKREDIR_DEFECT_BLOCKING_READ_EAGAIN | SOCKREDIR_DEFECT_CLOSE_UNREAD_FIN) << SOCKREDIR_DEFECT_PROBED_SHIFT);
    CHECK(format_json(s) == "{\"attached\":true,\"pin_dir\":\"/sys/fs/bpf/sockredir\",\"draining\":true,"
                            "\"cgroup\":\"/sys/fs/cgroup/test\",\"cgroup_id\":42,\"link_id\":7,"
                            "\"programs\":{\"sock_ops\":11,\"sk_msg\":12},\"maps\":{\"sock_hash\":21,\"counters\":22},"
                            "\"sockets\":3,\"max_sockets\":65536,\"ports\":\"80,443,8000-8100\","
                            "\"observer\":\"sockredir_observe_tp\","
                            "\"defects\":[\"blocking-read-eagain\"],"
                            "\"defects_probed\":[\"blocking-read-eagain\",\"close-unread-fin\"],"
                            "\"run_stats\":{\"sock_ops\":{\"runs\":5,\"run_time_ns\":500},"
                            "\"sk_msg\":{\"runs\":10,\"run_time_ns\":1234}},"
                            "\"counters\":{\"sockets_added\":100,\"insert_failed\":101,\"messages_redirected\":102,"
                            "\"bytes_redirected\":103,\"messages_passed\":104,\"skipped_blocking_client\":105,"
                            "\"skipped_learned_port\":106,\"passed_unproven_reader\":107,\"passed_catching_up\":108,"
                            "\"passed_held_back\":109,\"passed_no_peer\":110,\"passed_incompatible\":111,"
                            "\"passed_draining\":112,\"reader_blocking\":113,\"reader_peek_off\":114,"
                            "\"reader_lowat\":115,\"reader_oob_or_trunc\":116,\"blocking_read_eagain\":117,"
                            "\"sockets_evicted\":118,\"directions_promoted\":119,\"skipped_reader_options\":120,"
                            "\"reader_inq\":121,\"passed_demoted\":122,\"connections_demoted\":123}}\n");
}

TEST_CASE("status --json stays valid with quotes, backslashes and newlines in the paths, and with 64-bit values")
{
    Status s = attached_status();
    s.pin_dir = "/sys/fs/bpf/a\"b\\c\nd";
    s.cgroup = "/sys/fs/cgroup/\x01weird\"";
    s.counters[SOCKREDIR_BYTES_REDIRECTED] = UINT64_MAX;
    s.cgroup_id = UINT64_MAX;
    const Json v = parse_json(format_json(s));
    CHECK(v.at("pin_dir").text == s.pin_dir);
    CHECK(v.at("cgroup").text == s.cgroup);
    CHECK(v.at("cgroup_id").text == "18446744073709551615");
    CHECK(v.at("counters").at("bytes_redirected").text == "18446744073709551615");

    Status none;
    none.pin_dir = "\"\\";
    CHECK(parse_json(format_json(none)).at("pin_dir").text == "\"\\");
}

TEST_CASE("status prints one line per field, the counters by name, and says when run cost is not measured")
{
    const auto lines = lines_of(format_text(attached_status()));
    const std::vector<std::string> expected = {
        "attached",
        "  cgroup        /sys/fs/cgroup/test (id 42)",
        "  pin dir       /sys/fs/bpf/sockredir",
        "  programs      sock_ops id 11 (link id 7), sk_msg id 12",
        "  maps          sock_hash id 21, counters id 22",
        "  ports         80,443,8000-8100",
        "  observer      sockredir_observe_tp",
        "  kernel defects  not recorded (no self-test ran at attach)",
        "  sockets       3 of 65536",
        "  sockets_added            100",
        "  insert_failed            101",
        "  messages_redirected      102",
        "  bytes_redirected         103",
        "  messages_passed          104",
        "  skipped_blocking_client  105",
        "  skipped_learned_port     106",
        "  passed_unproven_reader   107",
        "  passed_catching_up       108",
        "  passed_held_back         109",
        "  passed_no_peer           110",
        "  passed_incompatible      111",
        "  passed_draining          112",
        "  reader_blocking          113",
        "  reader_peek_off          114",
        "  reader_lowat             115",
        "  reader_oob_or_trunc      116",
        "  blocking_read_eagain     117",
        "  sockets_evicted          118",
        "  directions_promoted      119",
        "  skipped_reader_options   120",
        "  reader_inq               121",
        "  passed_demoted           122",
        "  connections_demoted      123",
        "  run cost      not measured (sysctl kernel.bpf_stats_enabled=1 to measure)",
    };
    CHECK(lines == expected);
}

TEST_CASE("status shows draining, an unknown cgroup as ?, and the average run cost of each program")
{
    Status s = attached_status();
    s.draining = true;
    s.cgroup.clear();
    s.sockops_runs = 4;
    s.sockops_run_ns = 1000;
    s.msg_runs = 3;
    s.msg_run_ns = 301;
    const auto lines = lines_of(format_text(s));
    REQUIRE(lines.size() == static_cast<size_t>(10 + SOCKREDIR_COUNTER_MAX));
    CHECK(lines[0] == "attached (draining)");
    CHECK(lines[1] == "  cgroup        ? (id 42)");
    CHECK(lines.back() == "  run cost      sk_msg 100 ns over 3 runs, sock_ops 250 ns over 4 runs");

    // One program ran, the other not: no division by zero.
    s.sockops_runs = 0;
    s.sockops_run_ns = 0;
    CHECK(lines_of(format_text(s)).back() == "  run cost      sk_msg 100 ns over 3 runs, sock_ops 0 ns over 0 runs");
}
