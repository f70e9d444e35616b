#!/usr/bin/ruby
# ruby-pg client (require 'pg'): two connections, deterministic work.
#
# Connection parameters come from the PG* environment.  Usage:
#
#   ruby_client.rb [--app NAME] [--stmts K] [--pipeline P] [--copy R]
#
#  connection A, main thread, autocommit                     statements  xacts
#    CREATE TABLE IF NOT EXISTS (exec); DELETE (exec_params)       2          2
#    K INSERTs with exec_params                                    K          K
#    prepare + exec_prepared twice                                 3          3
#    COPY FROM STDIN of R rows (copy_data + put_copy_data)         1          1
#    COPY TO STDOUT reading them back (copy_data + get_copy_data)  1          1
#    pipeline mode: P send_query_params, one pipeline_sync         P     1 .. P
#
#  connection B, its own thread (started after A's set-up)
#    transaction { K INSERTs }            (BEGIN .. COMMIT)      K + 2        1
#    transaction { 2 INSERTs; raise }     (BEGIN .. ROLLBACK)      4          1
#    send_query SELECT count(*) + get_result loop on the socket     1          1
#
# Rows left in table ruby_t for this app: K + 2 + R + P (A) + K (B).
# Output: "PID <pid>", "CONN {json}" per connection, "READY" when both are done
# and still open; then waits for EOF on stdin, closes each connection in its
# own thread, prints "DONE {json}", exits 0.  Any error: stderr, exit 1.
require 'pg'
require 'json'
require 'optparse'

TABLE = 'ruby_t'
opts = { app: ENV['PQT_APP'] || 'pqt_ruby', stmts: 10, pipeline: 8, copy: 50 }
OptionParser.new do |o|
  o.on('--app NAME') { |v| opts[:app] = v }
  o.on('--stmts K', Integer) { |v| opts[:stmts] = v }
  o.on('--pipeline P', Integer) { |v| opts[:pipeline] = v }
  o.on('--copy R', Integer) { |v| opts[:copy] = v }
end.parse!
APP = opts[:app]
K = opts[:stmts]
P = opts[:pipeline]
R = opts[:copy]
INS = "INSERT INTO #{TABLE} (app, who, n) VALUES ($1, $2, $3)"
$stdout.sync = true

def tid
  # kernel thread id of the calling thread (gettid, x86_64 syscall 186 /
  # aarch64 178); Thread#native_thread_id exists from Ruby 3.1 on.
  Thread.current.respond_to?(:native_thread_id) ? Thread.current.native_thread_id : nil
end

def connect
  PG.connect(application_name: APP)
end

def check(cond, msg)
  raise msg unless cond
end

class Rollback < StandardError; end

def work_b(conn)
  conn.transaction do |c|
    K.times { |i| c.exec_params(INS, [APP, 'b', i]) }
  end
  begin
    conn.transaction do |c|
      c.exec_params(INS, [APP, 'b_rolled_back', 1])
      c.exec_params(INS, [APP, 'b_rolled_back', 2])
      raise Rollback
    end
  rescue Rollback
  end
  check(conn.transaction_status == PG::PQTRANS_IDLE, 'B not idle after rollback')
  conn.send_query("SELECT count(*) FROM #{TABLE} WHERE app = '#{conn.escape_string(APP)}' AND who = 'b'")
  results = []
  loop do
    conn.block                      # wait on the socket until a result is there
    r = conn.get_result
    break if r.nil?
    r.check
    results << r
  end
  check(results.size == 1 && results[0].getvalue(0, 0).to_i == K, "B counted #{results.inspect}")
end

def work_a(conn)
  K.times { |i| conn.exec_params(INS, [APP, 'a', i]) }
  conn.prepare('ins', INS)
  conn.exec_prepared('ins', [APP, 'a_prepared', 1])
  conn.exec_prepared('ins', [APP, 'a_prepared', 2])
  conn.copy_data("COPY #{TABLE} (app, who, n) FROM STDIN") do
    R.times { |i| conn.put_copy_data("#{APP}\ta_copy\t#{i}\n") }
  end
  got = []
  conn.copy_data("COPY (SELECT n FROM #{TABLE} WHERE app = '#{conn.escape_string(APP)}' " \
                 "AND who = 'a_copy' ORDER BY n) TO STDOUT") do
    while (line = conn.get_copy_data)
      got << line.to_i
    end
  end
  check(got == (0...R).to_a, "COPY TO read #{got.size} rows, expected #{R}")
  conn.enter_pipeline_mode
  P.times { |i| conn.send_query_params(INS, [APP, 'a_pipeline', i]) }
  conn.pipeline_sync
  P.times do
    r = conn.get_result
    r.check
    check(conn.get_result.nil?, 'pipeline: no NULL after a result')
  end
  r = conn.get_result
  check(r.result_status == PG::PGRES_PIPELINE_SYNC, "pipeline: expected sync, got status #{r.result_status}")
  conn.exit_pipeline_mode
  check(conn.pipeline_status == PG::PQ_PIPELINE_OFF, 'still in pipeline mode')
end

errors = []
puts "PID #{Process.pid}"
begin
  a = connect
  a.exec("CREATE TABLE IF NOT EXISTS #{TABLE} (app text, who text, n int)")
  a.exec_params("DELETE FROM #{TABLE} WHERE app = $1", [APP])
rescue StandardError => e
  warn "ruby_client: set-up: #{e.class}: #{e.message}"
  exit 1
end

release = Queue.new
b_ready = Queue.new
b_thread = Thread.new do
  info = { name: 'B', tid: tid }
  conn = nil
  begin
    conn = connect
    work_b(conn)
  rescue StandardError => e
    info[:error] = "#{e.class}: #{e.message}"
  end
  b_ready << info
  release.pop
  begin
    conn&.close
  rescue StandardError => e
    info[:error] ||= "close: #{e.message}"
  end
  info
end

a_info = { name: 'A', tid: tid }
begin
  work_a(a)
rescue StandardError => e
  a_info[:error] = "#{e.class}: #{e.message}"
end
b_info = b_ready.pop
puts "CONN #{JSON.generate(a_info)}"
puts "CONN #{JSON.generate(b_info)}"
unless a_info[:error] || b_info[:error]
  puts 'READY'
  $stdin.read
end
release << true
b_info = b_thread.value
begin
  a.close
rescue StandardError => e
  a_info[:error] ||= "close: #{e.message}"
end
[a_info, b_info].each { |i| errors << "connection #{i[:name]}: #{i[:error]}" if i[:error] }
unless errors.empty?
  errors.each { |m| warn "ruby_client: #{m}" }
  exit 1
end
puts "DONE #{JSON.generate(pid: Process.pid, rows: 2 * K + 2 + R + P)}"
