<?php
// php_fpm.php: one request to a php-fpm worker (tests/integration/t_php_fpm.sh,
// through cgi-fcgi).  A persistent connection (pg_pconnect) from the worker's
// environment (PGHOST, PGPORT, PGDATABASE, PGUSER, PGAPPNAME); then, by
// QUERY_STRING:
//   op=xact&table=T  one transaction that stamps its start and end with the
//                    server's clock_timestamp() into T, a pg_sleep between
//   op=ro&table=T    where the reads go (pg_is_in_recovery()) and what a
//                    write into T answers (its SQLSTATE)
// Prints one JSON line: the worker's pid, its backend, pg_is_in_recovery(),
// and for op=ro the write's SQLSTATE ("" if it succeeded).
header('Content-Type: application/json');
parse_str($_SERVER['QUERY_STRING'] ?? '', $q);
$op = $q['op'] ?? '';
$table = preg_replace('/[^a-z0-9_]/', '', $q['table'] ?? '');
$out = ['pid' => getmypid(), 'op' => $op];

function answer(array $out): void
{
	echo json_encode($out), "\n";
	exit;
}

$c = pg_pconnect('');
if (!$c) {
	$out['error'] = 'pg_pconnect failed';
	answer($out);
}
$one = function (string $sql) use ($c) {
	$r = pg_query($c, $sql);
	return $r === false ? null : pg_fetch_result($r, 0, 0);
};
$out['backend'] = (int)$one('select pg_backend_pid()');
$out['recovery'] = $one('select pg_is_in_recovery()') === 't';
if ($op === 'xact') {
	pg_query($c, 'begin');
	$id = $one("insert into $table (pid, t0) values (" . getmypid() . ", clock_timestamp()) returning id");
	pg_query($c, 'select pg_sleep(0.2)');
	pg_query($c, "update $table set t1 = clock_timestamp() where id = " . (int)$id);
	$ok = pg_query($c, 'commit') !== false && $id !== null;
	$out['ok'] = $ok;
	if (!$ok)
		$out['error'] = pg_last_error($c);
} elseif ($op === 'ro') {
	pg_send_query($c, "insert into $table (pid, t0) values (" . getmypid() . ", clock_timestamp())");
	$r = pg_get_result($c);
	while (pg_get_result($c) !== false)
		;
	$out['sqlstate'] = (string)pg_result_error_field($r, PGSQL_DIAG_SQLSTATE);
	$out['error'] = (string)pg_result_error($r);
}
answer($out);
