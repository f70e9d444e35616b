#!/usr/bin/perl
# Perl DBI + DBD::Pg client: two connections in one thread, deterministic work.
#
# Connection parameters come from the PG* environment.  Usage:
#
#   perl_client.pl [--app NAME] [--stmts K] [--copy R]
#
#  connection A, AutoCommit on
#    do CREATE TABLE IF NOT EXISTS; do DELETE ... WHERE app = ?
#    prepare INSERT (placeholders), execute it K times
#    COPY FROM STDIN of R rows (pg_putcopydata / pg_putcopyend)
#    COPY TO STDOUT reading them back (pg_getcopydata)
#    one asynchronous INSERT (pg_async => PG_ASYNC, pg_ready poll, pg_result)
#  connection B, AutoCommit off
#    K INSERTs (do with placeholders), commit
#    2 INSERTs, rollback
#    selectrow_array SELECT count(*), commit
#
# Rows left in table perl_t for this app: K + R + 1 (A) + K (B).
# Output: "PID <pid>", "CONN {json}" per connection, "READY" when both are done
# and still open; then waits for EOF on stdin, disconnects both, prints
# "DONE {json}", exits 0.  Any error: message on stderr, exit 1.
use strict;
use warnings;
use DBI;
use DBD::Pg qw(:async);
use Getopt::Long;
use Time::HiRes qw(usleep);

$| = 1;
my %o = (app => $ENV{PQT_APP} || 'pqt_perl', stmts => 10, copy => 50);
GetOptions('app=s' => \$o{app}, 'stmts=i' => \$o{stmts}, 'copy=i' => \$o{copy})
    or die "usage\n";
my ($APP, $K, $R) = ($o{app}, $o{stmts}, $o{copy});
my $T = 'perl_t';

sub connect_pg {
    my ($autocommit) = @_;
    # empty dbname part: DBD::Pg then takes everything from the PG* environment
    return DBI->connect("dbi:Pg:application_name=$APP", undef, undef,
                        { AutoCommit => $autocommit, RaiseError => 1, PrintError => 0,
                          PrintWarn => 0 });
}

my $ok = eval {
    print "PID $$\n";
    my $a = connect_pg(1);
    $a->do("SET client_min_messages = warning");
    $a->do("CREATE TABLE IF NOT EXISTS $T (app text, who text, n int)");
    $a->do("DELETE FROM $T WHERE app = ?", undef, $APP);
    my $ins = $a->prepare("INSERT INTO $T (app, who, n) VALUES (?, ?, ?)");
    $ins->execute($APP, 'a', $_) for 0 .. $K - 1;
    $ins->finish;

    $a->do("COPY $T (app, who, n) FROM STDIN");
    $a->pg_putcopydata("$APP\ta_copy\t$_\n") for 0 .. $R - 1;
    $a->pg_putcopyend();
    $a->do("COPY (SELECT n FROM $T WHERE app = " . $a->quote($APP)
           . " AND who = 'a_copy' ORDER BY n) TO STDOUT");
    my ($line, @got) = ('');
    while ($a->pg_getcopydata($line) >= 0) { chomp $line; push @got, $line; }
    die "COPY TO read " . scalar(@got) . " rows, expected $R\n"
        unless join(',', @got) eq join(',', 0 .. $R - 1);

    $a->do("INSERT INTO $T (app, who, n) VALUES (" . $a->quote($APP) . ", 'a_async', 1)",
           { pg_async => PG_ASYNC });
    my $spins = 0;
    until ($a->pg_ready) { usleep(1000); die "async INSERT never ready\n" if ++$spins > 10000; }
    my $rv = $a->pg_result;
    die "async INSERT returned $rv\n" unless $rv == 1;

    my $b = connect_pg(0);
    $b->do("INSERT INTO $T (app, who, n) VALUES (?, 'b', ?)", undef, $APP, $_) for 0 .. $K - 1;
    $b->commit;
    $b->do("INSERT INTO $T (app, who, n) VALUES (?, 'b_rolled_back', ?)", undef, $APP, $_)
        for 1 .. 2;
    $b->rollback;
    my ($n) = $b->selectrow_array("SELECT count(*) FROM $T WHERE app = ? AND who = 'b'",
                                  undef, $APP);
    $b->commit;
    die "B sees $n rows, expected $K\n" unless $n == $K;

    print qq(CONN {"name":"A","tid":$$,"autocommit":true}\n);
    print qq(CONN {"name":"B","tid":$$,"autocommit":false}\n);
    print "READY\n";
    1 while <STDIN>;             # hold until EOF
    $a->disconnect;
    $b->disconnect;
    my $rows = 2 * $K + $R + 1;
    print qq(DONE {"pid":$$,"rows":$rows}\n);
    1;
};
unless ($ok) {
    my $err = $@ || 'unknown error';
    chomp $err;
    print STDERR "perl_client: $err\n";
    exit 1;
}
exit 0;
