<?php
// tests/clients/php_lo.php N: pgsql's large objects in autocommit (each
// pg_lo_create / pg_lo_unlink is one PQfn call inside libpq), N of each,
// then "DONE <pid> <seconds>" and wait for stdin's EOF.
$n = (int)$argv[1];
$c = pg_connect("");
if (!$c) { fwrite(STDERR, "connect failed\n"); exit(2); }
echo "READY\n";
$t0 = microtime(true);
for ($i = 0; $i < $n; $i++) {
	$oid = pg_lo_create($c);
	if ($oid === false) { fwrite(STDERR, "lo_create: " . pg_last_error($c) . "\n"); exit(3); }
	if (!pg_lo_unlink($c, $oid)) { fwrite(STDERR, "lo_unlink: " . pg_last_error($c) . "\n"); exit(4); }
}
printf("DONE %d %.3f\n", getmypid(), microtime(true) - $t0);
fgets(STDIN);
