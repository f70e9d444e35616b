<?php
// php_cap.php API N TABLE RELEASE_FILE: N transactions through PHP's pgsql
// (API "pgsql") or PDO (API "pdo") extension, each logging into TABLE when
// it started and ended by the server's clock (clock_timestamp()), with a
// pg_sleep between; then prints "XACTS N <pid>" and keeps its connection
// open until RELEASE_FILE exists (at most 60 s).  Connection parameters come
// from the environment (PGHOST, PGPORT, PGDATABASE, PGUSER, PGAPPNAME).
// Used by tests/integration/t_php_cli.sh.
[$api, $n, $table, $release] = array_slice($argv, 1, 4);
$n = (int)$n;
$app = getenv('PGAPPNAME');
$pid = getmypid();

function fail(string $msg): void
{
	fwrite(STDERR, "php_cap: $msg\n");
	exit(1);
}

if ($api === 'pgsql') {
	$c = pg_connect('') or fail('pg_connect failed');
	for ($i = 0; $i < $n; $i++) {
		pg_query($c, 'begin') or fail(pg_last_error($c));
		$r = pg_query_params($c, "insert into $table (app, api, pid, t0) values ($1, $2, $3, clock_timestamp()) returning id",
			[$app, $api, $pid]) or fail(pg_last_error($c));
		$id = pg_fetch_result($r, 0, 0);
		pg_query($c, 'select pg_sleep(0.05)') or fail(pg_last_error($c));
		pg_query_params($c, "update $table set t1 = clock_timestamp() where id = $1", [$id]) or fail(pg_last_error($c));
		pg_query($c, 'commit') or fail(pg_last_error($c));
	}
} elseif ($api === 'pdo') {
	$dsn = sprintf('pgsql:host=%s;port=%s;dbname=%s;application_name=%s',
		getenv('PGHOST'), getenv('PGPORT'), getenv('PGDATABASE'), $app);
	try {
		$c = new PDO($dsn, getenv('PGUSER'), null, [PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION]);
		$ins = $c->prepare("insert into $table (app, api, pid, t0) values (?, ?, ?, clock_timestamp()) returning id");
		$upd = $c->prepare("update $table set t1 = clock_timestamp() where id = ?");
		for ($i = 0; $i < $n; $i++) {
			$c->beginTransaction();
			$ins->execute([$app, $api, $pid]);
			$id = $ins->fetchColumn();
			$c->query('select pg_sleep(0.05)');
			$upd->execute([$id]);
			$c->commit();
		}
	} catch (PDOException $e) {
		fail($e->getMessage());
	}
} else {
	fail("unknown API $api");
}
echo "XACTS $n $pid\n";
for ($i = 0; $i < 600 && !file_exists($release); $i++)
	usleep(100000);
