package HotffiTest;

# Integration-test harness for hotffi.
#
# Two ways to write tests (see tests/README.md):
#   * declarative: "=== TEST" blocks after __DATA__, run by run_tests();
#   * imperative:  HotffiTest::Nginx->new(...), for tests that drive nginx
#     step by step (reloads, signals, concurrency).
#
# The block format follows the spirit of OpenResty's Test::Nginx, but this
# is an independent implementation that uses core Perl modules only, so the
# tests run on a bare Debian install.

use strict;
use warnings;

# An "eval" section is Perl code.  It is evaluated here, above every
# file-scoped lexical and in package main, so that it cannot see or clobber
# this module's variables.
sub _eval_perl {
    package main;
    my @result = eval $_[0];
    die "eval of section failed: $@" if $@;
    return @result == 1 ? $result[0] : [@result];
}

use Cwd qw(abs_path);
use Exporter ();
use File::Basename qw(dirname);
use POSIX ();
use Test::More;
use Time::HiRes qw(time sleep);

our @ISA    = ('Exporter');
our @EXPORT = qw(run_tests run_blocks wait_until concurrent_requests start_clients
                 clients_answered stop_clients);

# The repository root, found from this file's location (tests/lib/..).
our $REPO = abs_path(dirname(__FILE__) . '/../..');

use constant {
    POLL_INTERVAL      => 0.02,   # seconds between checks in every bounded wait
    VALGRIND_SLOWDOWN  => 10,     # timeouts are multiplied by this under valgrind
    DEFAULT_WAIT       => 3,      # seconds to wait for expected error_log lines
    DEFAULT_TIMEOUT    => 10,     # request timeout, seconds
    CLIENTS_DEADLINE   => 60,     # concurrent_requests: all clients done by then
    BODY_DIAG_BYTES    => 2000,   # how much of a response body a failure shows
    LOG_TAIL_LINES     => 50,     # how much of error.log a failure shows
    MAX_MATCHING_LINES => 10,     # how many offending log lines no_error_log shows
};

# Without a no_error_log section a block must not log anything this severe.
my @DEFAULT_NO_ERROR_LOG = ('[alert]', '[crit]', '[emerg]', '[error]');

# Every section a block may have (see tests/README.md).  Anything else is
# a typo that would otherwise silently weaken the test.
my %SECTIONS = map { $_ => 1 } qw(
    main_config http_config config workers env log_level
    request request_body more_headers timeout repeat_each
    error_code response_body response_body_like response_headers
    error_log no_error_log wait
    skip skip_valgrind ONLY
);

my %FILTERS = (
    chomp => sub { my $v = shift; chomp $v unless ref $v; $v },
    eval  => \&_eval_perl,
);

sub import {
    my ($class, @names) = @_;
    _skip_all_without_valgrind();
    _install_signal_handlers();
    $class->export_to_level(1, $class, @names);
    # Test files get Test::More's functions too, so one "use" line suffices.
    Test::More->export_to_level(1, 'Test::More');
}

# ---------------------------------------------------------------------------
# Environment knobs shared by both APIs

sub _valgrind_mode { return $ENV{HOTFFI_TEST_VALGRIND} ? 1 : 0 }

# Everything is much slower under valgrind; stretch every bound alike.
sub _scaled {
    my ($seconds) = @_;
    return _valgrind_mode() ? $seconds * VALGRIND_SLOWDOWN : $seconds;
}

sub _hotffi_module_path {
    return $ENV{HOTFFI_MODULE} || "$REPO/build/modules/ngx_http_hotffi_module.so";
}

# A test that needs the hotffi module must not silently pass or skip
# because nobody built it: that would hide real breakage.
sub _missing_hotffi_message {
    my ($text) = @_;
    return undef unless $text =~ /hotffi|resty_ffi/;
    my $module = _hotffi_module_path();
    return -e $module ? undef : "build first: make ($module does not exist)";
}

sub _which {
    my ($program) = @_;
    for my $dir (split /:/, $ENV{PATH} // '') {
        return "$dir/$program" if length $dir && -x "$dir/$program";
    }
    return undef;
}

sub _skip_all_without_valgrind {
    return unless _valgrind_mode() && !_which('valgrind');
    plan(skip_all => 'HOTFFI_TEST_VALGRIND=1 but valgrind is not installed');
}

# Ctrl-C or a kill of the test must not leave nginx behind.  exit() (rather
# than dying by the signal) runs END blocks and destructors, which also
# remove the temporary prefixes.
# PIPE and HUP too: `prove ... | head` or a closed terminal would otherwise
# leave nginx (and Redis) running.
sub _install_signal_handlers {
    my %numbers = (INT => POSIX::SIGINT(), TERM => POSIX::SIGTERM(),
                   PIPE => POSIX::SIGPIPE(), HUP => POSIX::SIGHUP());
    for my $sig (keys %numbers) {
        my $number = $numbers{$sig};
        $SIG{$sig} = sub {
            HotffiTest::Nginx::_stop_all_live();
            exit(128 + $number);
        };
    }
}

# ---------------------------------------------------------------------------
# Small shared utilities

# Bounded polling: true as soon as $cond holds, false once $timeout passed.
sub _poll {
    my ($cond, $timeout) = @_;
    my $deadline = time + $timeout;
    while (1) {
        return 1 if $cond->();
        return 0 if time >= $deadline;
        sleep POLL_INTERVAL;
    }
}

sub _slurp {
    my ($path) = @_;
    open my $fh, '<', $path or return '';
    local $/;
    return scalar <$fh>;
}

sub _tail {
    my ($text, $count) = @_;
    my @lines = split /^/m, $text;
    splice @lines, 0, @lines - $count if @lines > $count;
    return join '', @lines;
}

sub _shorten {
    my ($text, $max) = @_;
    return $text if length $text <= $max;
    return substr($text, 0, $max) . "\n... (" . length($text) . " bytes in total)";
}

# ---------------------------------------------------------------------------
# Public helpers

sub wait_until {
    my ($cond, $timeout, $what) = @_;
    $timeout = _scaled($timeout);
    return 1 if _poll($cond, $timeout);
    local $Test::Builder::Level = $Test::Builder::Level + 1;   # blame the caller
    ok(0, "timed out after ${timeout}s waiting for $what");
    return 0;
}

# Runs $count GETs of $path from $concurrency forked clients.  Answers that
# never arrive (client stuck past the deadline, or crashed) count as failed.
sub concurrent_requests {
    my ($nginx, $count, $concurrency, $path, %opt) = @_;
    my $timeout  = $opt{timeout} // DEFAULT_TIMEOUT;
    my $deadline = time + _scaled($opt{deadline} // CLIENTS_DEADLINE);
    my @clients;
    for my $i (0 .. $concurrency - 1) {
        my $share = int($count / $concurrency) + ($i < $count % $concurrency ? 1 : 0);
        push @clients, _spawn_client($nginx, $share, $path, $timeout) if $share;
    }
    my @statuses = _collect_statuses(\@clients, $deadline);
    my %result = (ok => 0, failed => $count - @statuses, statuses => {});
    for my $status (@statuses) {
        $result{statuses}{$status}++;
        $result{$status =~ /^2/ ? 'ok' : 'failed'}++;
    }
    return \%result;
}

# Keeps $concurrency forked clients GETting $path, one request after the
# other, until stop_clients(); for asserting on what every answer said
# while something changes under load.
sub start_clients {
    my ($nginx, $concurrency, $path, %opt) = @_;
    my $stop = "$nginx->{prefix}/logs/clients.stop." . ++$nginx->{client_runs};
    my @clients = map {
        _spawn_client($nginx, undef, $path, $opt{timeout} // DEFAULT_TIMEOUT,
                      $stop)
    } 1 .. $concurrency;
    return { clients => \@clients, stop => $stop };
}

# How many answers the clients of start_clients() have had so far: reads
# what waits in their pipes without blocking (stop_clients() keeps it), so
# that a test can wait for load to be under way, or to go on, rather than
# sleep and hope.
sub clients_answered {
    my ($run) = @_;
    my $answers = 0;
    for my $client (@{ $run->{clients} }) {
        my $fh = $client->{fh};
        while (1) {
            my $bits = '';
            vec($bits, fileno($fh), 1) = 1;
            last unless select($bits, undef, undef, 0) > 0;
            # nothing more (0 at the end: stop_clients() closes the pipe)
            last unless sysread($fh, $client->{output}, 65536,
                                length $client->{output});
        }
        $answers += () = $client->{output} =~ /\n/g;
    }
    return $answers;
}

# Ends the clients of start_clients(); returns every answer as
# [status, body], in each client's order (answers that never came are
# missing: count them against what the clients were told to do).
sub stop_clients {
    my ($run, %opt) = @_;
    HotffiTest::Nginx::_write_file($run->{stop}, '');
    my $deadline = time + _scaled($opt{deadline} // CLIENTS_DEADLINE);
    return map { [ split /\t/, $_, 2 ] }
        _collect_statuses($run->{clients}, $deadline);
}

# A client child reports one status per line through a pipe.  It leaves
# with POSIX::_exit so that no END block or destructor of the parent's
# objects (which would stop nginx) runs in it.
# Without a count, it runs until the file $stop exists and reports
# "status<TAB>body" (the body without its last newline, others as spaces).
sub _spawn_client {
    my ($nginx, $requests, $path, $timeout, $stop) = @_;
    pipe(my $reader, my $writer) or die "pipe: $!";
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        $SIG{$_} = 'DEFAULT' for qw(INT TERM);
        close $reader;
        $writer->autoflush(1);
        eval {
            for (my $i = 0; defined $requests ? $i < $requests : !-e $stop; $i++) {
                my $res = $nginx->request('GET', $path, { timeout => $timeout });
                if (defined $requests) {
                    print {$writer} "$res->{status}\n";
                } else {
                    print {$writer} "$res->{status}\t"
                        . ($res->{content} =~ s/\n\z//r =~ tr/\n/ /r) . "\n";
                }
            }
        };
        close $writer;
        POSIX::_exit(0);
    }
    close $writer;
    return { pid => $pid, fh => $reader, output => '' };
}

sub _collect_statuses {
    my ($clients, $deadline) = @_;
    my %open = map { fileno($_->{fh}) => $_ } @$clients;
    while (%open && time < $deadline) {
        my $wanted = '';
        vec($wanted, $_, 1) = 1 for keys %open;
        my $ready = select(my $readable = $wanted, undef, undef, POLL_INTERVAL * 5);
        next if $ready <= 0;
        for my $fd (grep { vec($readable, $_, 1) } keys %open) {
            my $client = $open{$fd};
            next if sysread($client->{fh}, $client->{output}, 65536, length $client->{output});
            close $client->{fh};
            delete $open{$fd};
        }
    }
    # Stragglers are killed so that every child can be reaped right away.
    for my $client (@$clients) {
        kill 'KILL', $client->{pid} if $open{ fileno($client->{fh}) // -1 };
        waitpid $client->{pid}, 0;
    }
    return map { split /\n/, $_->{output} } @$clients;
}

# ---------------------------------------------------------------------------
# Declarative blocks

sub run_tests {
    run_blocks(_read_data(scalar caller));
    done_testing();
}

# Runs the blocks of $text (the __DATA__ format) as run_tests() does,
# without ending the plan: for blocks made from a table of cases (one set
# of cases run for each runtime language, tests/lib/HotffiLangs.pm).
sub run_blocks {
    my ($text) = @_;
    my @blocks = _parse_blocks($text);
    my $config_text = join "\n", map { @{$_}{qw(main_config http_config config)} } @blocks;
    my $missing = _missing_hotffi_message($config_text);
    BAIL_OUT($missing) if $missing;
    my @only = grep { $_->{only} } @blocks;
    if (@only) {
        diag('running only the blocks marked --- ONLY');
        @blocks = @only;
    }
    _run_block($_) for @blocks;
}

sub _read_data {
    my ($package) = @_;
    my $fh = do { no strict 'refs'; *{"${package}::DATA"}{IO} };
    die "no __DATA__ section in $0\n" unless $fh;
    local $/;
    return scalar <$fh>;
}

# Splits the __DATA__ text into blocks ("=== name") made of sections
# ("--- name [filters]" followed by text, or "--- name: value").
sub _parse_blocks {
    my ($text) = @_;
    my (@raw, $section);
    for my $line (split /^/m, $text) {
        if ($line =~ /^=== (.+?)\s*$/) {
            push @raw, { name => $1, sections => {} };
            undef $section;
        } elsif ($line =~ /^--- (\w+)(.*)$/) {
            die "section '--- $1' before the first '=== ' block\n" unless @raw;
            $section = _start_section($raw[-1], $1, $2);
        } elsif ($section) {
            $section->{text} .= $line;
        }
    }
    die "no '=== ' blocks after __DATA__ in $0\n" unless @raw;
    return map { _build_block($_) } @raw;
}

sub _start_section {
    my ($raw, $name, $rest) = @_;
    die "$raw->{name}: unknown section '--- $name'\n" unless $SECTIONS{$name};
    die "$raw->{name}: section '--- $name' given twice\n" if $raw->{sections}{$name};
    my $section = { text => '', filters => [] };
    if ($rest =~ /^\s*:\s*(.*?)\s*$/) {
        $section->{inline} = $1;
    } else {
        $section->{filters} = [ split ' ', $rest ];
        for (@{ $section->{filters} }) {
            die "$raw->{name}: unknown filter '$_' on '--- $name'\n" unless $FILTERS{$_};
        }
    }
    return $raw->{sections}{$name} = $section;
}

# Like Test::Base: drop blank lines around a section but keep the final
# newline, so "--- response_body\nhi\n\n" means "hi\n".
sub _section_value {
    my ($section) = @_;
    return $section->{inline} if defined $section->{inline};
    my $value = $section->{text};
    $value =~ s/\A(?:[ \t]*\n)+//;
    $value =~ s/(?<=\n)\s+\z//;
    $value = $FILTERS{$_}->($value) for @{ $section->{filters} };
    return $value;
}

sub _build_block {
    my ($raw) = @_;
    my %value = map { $_ => _section_value($raw->{sections}{$_}) } keys %{ $raw->{sections} };
    my $block = eval { _interpret_sections($raw->{name}, \%value) };
    die "$raw->{name}: $@" unless $block;
    return $block;
}

sub _interpret_sections {
    my ($name, $v) = @_;
    my %block = (
        name        => $name,
        only        => exists $v->{ONLY},
        skip        => _skip_reason($v),
        main_config => $v->{main_config} // '',
        http_config => $v->{http_config} // '',
        config      => $v->{config} // '',
        log_level   => _nonempty($v->{log_level}, undef),
        workers     => _number($v, 'workers', 1),
        error_code  => _number($v, 'error_code', 200),
        wait        => _number($v, 'wait', DEFAULT_WAIT),
        timeout     => _number($v, 'timeout', DEFAULT_TIMEOUT),
        repeat_each => _number($v, 'repeat_each', 1),
        env         => { map { _pair($_, qr/^(\w+)=(.*)$/, 'NAME=value') } _list($v->{env}) },
        more_headers     => _headers($v->{more_headers}),
        response_headers => [ map { _expected_header($_) } _list($v->{response_headers}) ],
        error_log        => [ map { _matcher($_) } _list($v->{error_log}) ],
        no_error_log     => [ map { _matcher($_) }
                              exists $v->{no_error_log} ? _list($v->{no_error_log}) : @DEFAULT_NO_ERROR_LOG ],
        request_body       => $v->{request_body},
        response_body      => $v->{response_body},
        response_body_like => _body_regex($v->{response_body_like}),
    );
    return \%block if defined $block{skip};
    die "no '--- request' section\n" unless defined $v->{request};
    @block{qw(method path)} = _request_line($v->{request});
    return \%block;
}

sub _skip_reason {
    my ($v) = @_;
    return _nonempty($v->{skip}, 'skipped') if exists $v->{skip};
    return _nonempty($v->{skip_valgrind}, 'not under valgrind')
        if exists $v->{skip_valgrind} && _valgrind_mode();
    return undef;
}

sub _trim { return $_[0] =~ s/^\s+|\s+$//gr }

sub _nonempty {
    my ($text, $default) = @_;
    $text = _trim($text // '');
    return length $text ? $text : $default;
}

sub _number {
    my ($v, $name, $default) = @_;
    return $default unless defined $v->{$name};
    my $number = _trim($v->{$name});
    die "--- $name must be a number, not '$number'\n" unless $number =~ /^\d+(?:\.\d+)?$/;
    return $number;
}

# List sections are one item per line; an "eval" section may instead
# produce an array reference (e.g. of qr// objects).
sub _list {
    my ($value) = @_;
    return () unless defined $value;
    return @$value if ref $value eq 'ARRAY';
    return map { _trim($_) } grep { /\S/ } split /\n/, $value;
}

sub _pair {
    my ($line, $re, $form) = @_;
    my @pair = $line =~ $re or die "expected '$form', got '$line'\n";
    return @pair;
}

sub _headers {
    my ($value) = @_;
    my %headers;
    for my $line (_list($value)) {
        my ($name, $content) = _pair($line, qr/^([^:\s]+)\s*:\s*(.*)$/, 'Name: value');
        # A repeated header becomes an array ref, which HTTP::Tiny sends as
        # several header lines.
        $headers{$name} = exists $headers{$name}
            ? [ (ref $headers{$name} ? @{ $headers{$name} } : $headers{$name}), $content ]
            : $content;
    }
    return \%headers;
}

# "Name: value" (exact), "Name: qr/re/" (regex) or "!Name" (must be absent).
sub _expected_header {
    my ($line) = @_;
    return [ $1, undef ] if $line =~ /^!\s*(\S+)$/;
    my ($name, $value) = _pair($line, qr/^([^:\s]+)\s*:\s*(.*)$/, 'Name: value');
    my $matcher = _matcher($value);
    return [ $name, $matcher->{re} // $value ];
}

# A log expectation: a qr// object, a line written "qr/.../flags", or a
# plain substring.
sub _matcher {
    my ($item) = @_;
    return { desc => "$item", re => $item } if ref $item eq 'Regexp';
    if (my ($pattern, $flags) = $item =~ m{\Aqr/(.*)/([msixn]*)\z}s) {
        my $re = eval { qr/(?$flags)$pattern/ } or die "bad regex $item: $@";
        return { desc => $item, re => $re };
    }
    return { desc => "'$item'", text => $item };
}

# The section's final newline is layout, not part of the pattern.
sub _body_regex {
    my ($text) = @_;
    return undef unless defined $text;
    return $text if ref $text eq 'Regexp';
    chomp $text;
    return qr/$text/ms;
}

sub _request_line {
    my ($text) = @_;
    my @lines = grep { /\S/ } split /\n/, $text;
    die "--- request must be one line 'METHOD /uri' (the body goes in --- request_body)\n"
        unless @lines == 1 && $lines[0] =~ m{^\s*([A-Z]+)\s+(/\S*)(?:\s+HTTP/[\d.]+)?\s*$};
    return ($1, $2);
}

sub _run_block {
    my ($block) = @_;
    my $name = $block->{name};
    if (defined $block->{skip}) {
        SKIP: { skip("$name: $block->{skip}", 1) }
        return;
    }
    my $builder = Test::More->builder;
    my $first_test = $builder->current_test;
    my $nginx = HotffiTest::Nginx->new(
        name => $name,
        map { $_ => $block->{$_} } qw(main_config http_config config workers env log_level),
    );
    unless (_start_for_block($nginx)) {
        $nginx->stop;
        return;
    }
    _request_and_check($nginx, $block, $_) for 1 .. $block->{repeat_each};
    _wait_for_log_lines($nginx, $block);
    $nginx->quit;
    ok(!$nginx->killed, "$name - nginx exited on SIGQUIT");
    # Checked after shutdown so that messages logged while exiting count too.
    my $log = $nginx->error_log_text;
    _check_error_log($block, $log);
    $nginx->stop;
    my @results = ($builder->details)[ $first_test .. $builder->current_test - 1 ];
    _diag_block_failure($nginx, $log) if grep { !$_->{ok} } @results;
}

sub _start_for_block {
    my ($nginx) = @_;
    my $started = eval { $nginx->start; 1 };
    ok($started, $nginx->name . ' - nginx started') or diag($@);
    return $started;
}

sub _request_and_check {
    my ($nginx, $block, $round) = @_;
    my $label = $block->{name};
    $label .= " (request $round/$block->{repeat_each})" if $block->{repeat_each} > 1;
    my $res = $nginx->request($block->{method}, $block->{path}, {
        body    => $block->{request_body},
        headers => $block->{more_headers},
        timeout => $block->{timeout},
    });
    _diag_response("$block->{method} $block->{path}", $res) unless _check_response($block, $res, $label);
}

sub _check_response {
    my ($block, $res, $label) = @_;
    my @ok = is($res->{status}, $block->{error_code}, "$label - status code");
    push @ok, _check_body($res->{content}, $block->{response_body}, "$label - response_body")
        if defined $block->{response_body};
    push @ok, like($res->{content}, $block->{response_body_like}, "$label - response_body_like")
        if defined $block->{response_body_like};
    for my $header (@{ $block->{response_headers} }) {
        my ($name, $want) = @$header;
        my $got = $res->{headers}{ lc $name };
        $got = join ', ', @$got if ref $got eq 'ARRAY';
        push @ok, !defined $want ? ok(!defined $got, "$label - no $name header")
                : ref $want      ? like($got, $want, "$label - header $name")
                :                  is($got, $want, "$label - header $name");
    }
    return !grep { !$_ } @ok;
}

# Large bodies are compared without dumping both of them into the output.
sub _check_body {
    my ($got, $want, $test_name) = @_;
    return is($got, $want, $test_name) if length($got) + length($want) <= BODY_DIAG_BYTES;
    my $ok = ok($got eq $want, $test_name);
    diag(_first_difference($got, $want)) unless $ok;
    return $ok;
}

sub _first_difference {
    my ($got, $want) = @_;
    my $shorter = length $got < length $want ? length $got : length $want;
    my $at = ($got ^ $want) =~ /[^\0]/ && $-[0] < $shorter ? $-[0] : $shorter;
    my $start = $at > 20 ? $at - 20 : 0;
    return sprintf "bodies differ at byte %d (got %d bytes, expected %d)\n"
        . "     got: %s\nexpected: %s", $at, length $got, length $want,
        map { "'" . substr($_, $start, 80) . "'" } $got, $want;
}

sub _diag_response {
    my ($request, $res) = @_;
    diag("request: $request\n"
        . "status: $res->{status} $res->{reason}\n"
        . "body:\n" . _shorten($res->{content}, BODY_DIAG_BYTES));
}

sub _wait_for_log_lines {
    my ($nginx, $block) = @_;
    my @matchers = @{ $block->{error_log} } or return;
    _poll(sub {
        my $log = $nginx->error_log_text;
        return !grep { !_log_matches($log, $_) } @matchers;
    }, _scaled($block->{wait}));
}

sub _check_error_log {
    my ($block, $log) = @_;
    for my $matcher (@{ $block->{error_log} }) {
        ok(_log_matches($log, $matcher), "$block->{name} - error.log has $matcher->{desc}");
    }
    for my $matcher (@{ $block->{no_error_log} }) {
        my @hits = grep { _log_matches($_, $matcher) } split /^/m, $log;
        ok(!@hits, "$block->{name} - error.log lacks $matcher->{desc}")
            or diag("offending lines:\n" . join '', grep { defined } @hits[ 0 .. MAX_MATCHING_LINES - 1 ]);
    }
}

sub _log_matches {
    my ($text, $matcher) = @_;
    return $matcher->{re} ? $text =~ $matcher->{re} : index($text, $matcher->{text}) >= 0;
}

sub _diag_block_failure {
    my ($nginx, $log) = @_;
    my $fate = $ENV{HOTFFI_TEST_KEEP} ? 'kept' : 'removed; set HOTFFI_TEST_KEEP=1 to keep it';
    diag("prefix: " . $nginx->prefix . " ($fate)\n"
        . "last " . LOG_TAIL_LINES . " lines of error.log:\n" . _tail($log, LOG_TAIL_LINES));
}

# ===========================================================================

package HotffiTest::Nginx;

# One nginx instance in its own temporary prefix.  The master runs in the
# foreground as our child and leads its own process group, so the master and
# its workers can always be killed together.

use strict;
use warnings;

use File::Path qw(make_path remove_tree);
use File::Temp qw(tempdir);
use HTTP::Tiny;
use IO::Socket::INET;
use POSIX qw(WNOHANG);
use Time::HiRes qw(time);

use constant {
    NGINX_BINARY     => '/usr/sbin/nginx',
    NDK_MODULE       => '/usr/lib/nginx/modules/ndk_http_module.so',
    LUA_MODULE       => '/usr/lib/nginx/modules/ngx_http_lua_module.so',
    START_TIMEOUT    => 10,
    QUIT_TIMEOUT     => 10,
    RELOAD_TIMEOUT   => 10,
    REAP_TIMEOUT     => 5,    # after SIGKILL
    EMERGENCY_QUIT   => 2,    # SIGQUIT grace period when cleaning up at exit
    PORT_ATTEMPTS    => 3,
    NUDGE_INTERVAL   => 1,    # see _await_signal_effect
};

# Stock nginx keeps a few process-lifetime allocations that valgrind calls
# "definitely lost" in single-process mode: the environment built by
# ngx_set_environment and the connection/event arrays of the event module
# (whose init function is static, so a stripped binary shows only "obj:").
# Allocations in hotffi's own code are not covered by these.
my $VALGRIND_BASELINE = <<'SUPP';
{
   nginx-set-environment
   Memcheck:Leak
   match-leak-kinds: definite
   fun:malloc
   fun:ngx_alloc
   fun:ngx_set_environment
}
{
   nginx-event-process-init-stripped
   Memcheck:Leak
   match-leak-kinds: definite
   fun:malloc
   fun:ngx_alloc
   obj:*/nginx
   fun:ngx_single_process_cycle
}
{
   nginx-event-process-init
   Memcheck:Leak
   match-leak-kinds: definite
   fun:malloc
   fun:ngx_alloc
   fun:ngx_event_process_init
}
SUPP

my %LIVE;   # master pid => pid of the test process that started it

my %DEFAULTS = (
    name        => 'nginx',
    main_config => '',
    http_config => '',
    config      => '',
    workers     => 1,
    env         => {},
    log_level   => undef,
    # extra parameters of the listen directive, e.g. 'reuseport' to spread
    # connections over all workers
    listen_options => '',
);

sub new {
    my ($class, %args) = @_;
    for (keys %args) {
        die "HotffiTest::Nginx->new: unknown option '$_'\n" unless exists $DEFAULTS{$_};
    }
    my $self = bless {
        %DEFAULTS,
        (map { $_ => $args{$_} } grep { defined $args{$_} } keys %args),
        owner    => $$,
        valgrind => HotffiTest::_valgrind_mode(),
    }, $class;
    $self->{log_level} //= $ENV{HOTFFI_TEST_LOG_LEVEL} || 'info';
    $self->{prefix} = tempdir('hotffi-test-XXXXXX', TMPDIR => 1);
    # When the tests run as root, workers run as "nobody" and must be able
    # to reach the temp paths below the prefix.
    chmod 0755, $self->{prefix};
    make_path("$self->{prefix}/conf", "$self->{prefix}/logs");
    return $self;
}

sub name        { $_[0]{name} }
sub port        { $_[0]{port} }
sub prefix      { $_[0]{prefix} }
sub pid         { $_[0]{pid} }
sub killed      { $_[0]{killed} }
sub error_log_text { HotffiTest::_slurp("$_[0]{prefix}/logs/error.log") }

sub start {
    my ($self) = @_;
    die "$self->{name}: nginx is already running (pid $self->{pid})\n" if $self->{pid};
    my $missing = HotffiTest::_missing_hotffi_message(
        join "\n", @{$self}{qw(main_config http_config config)});
    die "$missing\n" if $missing;
    delete $self->{killed};
    for my $attempt (1 .. PORT_ATTEMPTS) {
        $self->{port} = _free_port();
        $self->_prepare_files;
        $self->_spawn;
        return $self if $self->_wait_ready;
        my $report = $self->_startup_report;
        $self->_kill_and_reap;
        # The port was free when picked but something may have taken it
        # before nginx bound it.
        next if $attempt < PORT_ATTEMPTS && $report =~ /Address already in use/;
        die "$self->{name}: nginx failed to start\n$report";
    }
}

sub request {
    my ($self, $method, $path, $opt) = @_;
    $opt ||= {};
    my $http = HTTP::Tiny->new(
        timeout      => HotffiTest::_scaled($opt->{timeout} // HotffiTest::DEFAULT_TIMEOUT),
        max_redirect => 0,   # a redirect is a response worth asserting on
        keep_alive   => 0,   # never reuse a connection to a reloaded worker
    );
    my %req = (headers => $opt->{headers} || {});
    $req{content} = $opt->{body} if defined $opt->{body};
    # nginx may close early (e.g. 413) while we still send a body.
    local $SIG{PIPE} = 'IGNORE';
    my $res = $http->request($method, "http://127.0.0.1:$self->{port}$path", \%req);
    # HTTP::Tiny leaves content out for bodiless responses such as 204.
    $res->{content} //= '';
    return $res;
}

sub get  { my ($self, $path, $opt) = @_; return $self->request('GET', $path, $opt) }

sub post {
    my ($self, $path, $body, $opt) = @_;
    return $self->request('POST', $path, { %{ $opt || {} }, body => $body });
}

sub signal {
    my ($self, $signal) = @_;
    die "$self->{name}: nginx is not running\n" unless $self->{pid};
    kill($signal, $self->{pid}) or die "$self->{name}: kill $signal $self->{pid}: $!\n";
}

# Worker processes are the master's children whose title says so; this
# also lists workers still shutting down after a reload.
sub worker_pids {
    my ($self) = @_;
    return () unless $self->{pid};
    my @pids;
    for my $dir (glob '/proc/[0-9]*') {
        my $stat = HotffiTest::_slurp("$dir/stat");
        my ($pid, $state, $ppid) = $stat =~ /^(\d+) \(.*\) (\S) (\d+)/s or next;
        next unless $ppid == $self->{pid} && $state ne 'Z';
        push @pids, $pid if HotffiTest::_slurp("$dir/cmdline") =~ /worker process/;
    }
    return sort { $a <=> $b } @pids;
}

sub reload {
    my ($self) = @_;
    return $self->_reload_single_process if $self->{valgrind};
    # Counting matters: a freshly forked worker is only listed once it has
    # set its title, so a partial list is normal right after a (re)start.
    my $expected = $self->{workers} =~ /^\d+$/ ? $self->{workers} : undef;
    my @old;
    HotffiTest::_poll(sub {
        @old = $self->worker_pids;
        return $expected ? @old == $expected : @old > 0;
    }, HotffiTest::_scaled(RELOAD_TIMEOUT))
        or die "$self->{name}: worker processes not all running before reload\n";
    my %old = map { $_ => 1 } @old;
    $self->signal('HUP');
    my $done = HotffiTest::_poll(sub {
        my @now = $self->worker_pids;
        return @now == @old && !grep { $old{$_} } @now;
    }, HotffiTest::_scaled(RELOAD_TIMEOUT));
    die "$self->{name}: reload did not replace workers @old\n" . $self->_log_tail unless $done;
    return $self;
}

# Without a master there are no workers to watch; nginx logs this line when
# it starts re-reading the configuration, and since it is single-threaded
# any request sent afterwards is served by the new configuration.
sub _reload_single_process {
    my ($self) = @_;
    my $offset = length $self->error_log_text;
    $self->signal('HUP');
    $self->_await_signal_effect(sub {
        substr($self->error_log_text, $offset) =~ /: reconfiguring$/m;
    }, HotffiTest::_scaled(RELOAD_TIMEOUT))
        or die "$self->{name}: nginx did not start reconfiguring\n" . $self->_log_tail;
    return $self;
}

sub quit {
    my ($self, %opt) = @_;
    my $pid = $self->{pid} or return 0;
    my $timeout = HotffiTest::_scaled($opt{timeout} // QUIT_TIMEOUT);
    my $started = time;
    kill 'QUIT', $pid;
    unless ($self->_await_signal_effect(sub { !$self->_alive }, $timeout)) {
        $self->{killed} = 1;
        Test::More::diag("$self->{name}: nginx master $pid still running ${timeout}s after SIGQUIT; killed it");
    }
    my $elapsed = time - $started;
    # Also catches workers orphaned by a master that crashed or was killed.
    $self->_kill_and_reap;
    return $elapsed;
}

# A single-process nginx can miss a signal: if it lands just before
# epoll_wait() (valgrind delivers pending signals right at syscall entry,
# so there it is the common case), the handler sets its flag but the event
# loop sleeps on.  A connection to the port wakes the loop, which then acts
# on the flag.  A master process waits in sigsuspend() and needs no help.
sub _await_signal_effect {
    my ($self, $cond, $timeout) = @_;
    return HotffiTest::_poll($cond, $timeout) unless $self->{valgrind};
    my $next_nudge = time + NUDGE_INTERVAL;
    return HotffiTest::_poll(sub {
        return 1 if $cond->();
        if (time >= $next_nudge) {
            _accepts($self->{port});
            $next_nudge = time + NUDGE_INTERVAL;
        }
        return 0;
    }, $timeout);
}

sub stop {
    my ($self) = @_;
    $self->quit;
    $self->_check_valgrind if $self->{valgrind} && $self->{started} && !$self->{valgrind_checked}++;
    $self->_remove_prefix;
}

sub DESTROY {
    my ($self) = @_;
    return unless $$ == $self->{owner};   # not in forked clients
    local ($?, $@, $!);
    $self->quit;
    $self->_remove_prefix;
}

END { _stop_all_live() }

# Last-resort cleanup (exit, die, signals) for masters whose objects may be
# gone or unreachable; only the test process that started them acts.
sub _stop_all_live {
    local ($?, $!);
    for my $pid (grep { $LIVE{$_} == $$ } keys %LIVE) {
        kill 'QUIT', $pid;
        HotffiTest::_poll(sub { waitpid($pid, WNOHANG) != 0 }, EMERGENCY_QUIT);
        kill 'KILL', -$pid if kill 0, -$pid;
        waitpid $pid, WNOHANG;
        delete $LIVE{$pid};
    }
}

sub _free_port {
    my $socket = IO::Socket::INET->new(
        LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp', Listen => 1,
    ) or die "cannot find a free port: $@\n";
    return $socket->sockport;
}

sub _prepare_files {
    my ($self) = @_;
    unlink glob "$self->{prefix}/logs/*";   # every start, and port retry, logs afresh
    _write_file("$self->{prefix}/conf/nginx.conf", $self->_config_text);
    _write_file("$self->{prefix}/conf/valgrind-baseline.supp", $VALGRIND_BASELINE) if $self->{valgrind};
}

sub _write_file {
    my ($path, $text) = @_;
    open my $fh, '>', $path or die "cannot write $path: $!\n";
    print {$fh} $text;
    close $fh or die "cannot write $path: $!\n";
}

sub _config_text {
    my ($self) = @_;
    my $p = $self->{prefix};
    my $repo = $HotffiTest::REPO;
    # Valgrind must see every allocation, so everything runs in one process.
    my $processes = $self->{valgrind}
        ? 'master_process off;'
        : "master_process on;\nworker_processes $self->{workers};";
    my $env = join '', map { "env $_;\n" }
        'LD_LIBRARY_PATH', 'HOTFFI_TEST_PORT', sort keys %{ $self->{env} };
    my $modules = join '', map { "load_module $_;\n" } _modules();
    return <<"CONF";
daemon off;
$processes
error_log $p/logs/error.log $self->{log_level};
pid $p/logs/nginx.pid;
lock_file $p/logs/nginx.lock;
$env$modules
$self->{main_config}

events {
    worker_connections 1024;
}

http {
    access_log off;
    # Debian's compiled-in temp paths are under /var/lib/nginx.
    client_body_temp_path $p/client_body_temp;
    proxy_temp_path $p/proxy_temp;
    fastcgi_temp_path $p/fastcgi_temp;
    uwsgi_temp_path $p/uwsgi_temp;
    scgi_temp_path $p/scgi_temp;
    lua_package_path "$repo/lua/?.lua;$repo/lua/?/init.lua;$repo/tests/lib/?.lua;/usr/share/lua/5.1/?.lua;;";
    client_max_body_size 64m;
    client_body_buffer_size 64m;

$self->{http_config}

    server {
        listen 127.0.0.1:$self->{port}@{[ $self->{listen_options} ? " $self->{listen_options}" : '' ]};
        server_name localhost;

$self->{config}
    }
}
CONF
}

sub _modules {
    my @modules = (NDK_MODULE, LUA_MODULE);
    return @modules if $ENV{HOTFFI_TEST_NO_HOTFFI};
    my $hotffi = HotffiTest::_hotffi_module_path();
    die "HOTFFI_MODULE=$hotffi does not exist\n" if $ENV{HOTFFI_MODULE} && !-e $hotffi;
    push @modules, $hotffi if -e $hotffi;
    return @modules;
}

sub _command {
    my ($self) = @_;
    my $p = $self->{prefix};
    my @nginx = ($ENV{HOTFFI_NGINX} || NGINX_BINARY,
        '-p', "$p/", '-c', "$p/conf/nginx.conf", '-e', "$p/logs/error.log");
    return @nginx unless $self->{valgrind};
    return (HotffiTest::_which('valgrind'),
        '--error-exitcode=99', '--leak-check=full', '--errors-for-leak-kinds=definite',
        "--log-file=$p/logs/valgrind.%p.log",
        "--suppressions=$p/conf/valgrind-baseline.supp",
        ($ENV{HOTFFI_TEST_VALGRIND_SUPP} ? "--suppressions=$ENV{HOTFFI_TEST_VALGRIND_SUPP}" : ()),
        @nginx);
}

sub _child_env {
    my ($self) = @_;
    my $libs = "$HotffiTest::REPO/build/lib";
    $libs .= ":$ENV{LD_LIBRARY_PATH}" if length($ENV{LD_LIBRARY_PATH} // '');
    return (%{ $self->{env} }, LD_LIBRARY_PATH => $libs, HOTFFI_TEST_PORT => $self->{port});
}

sub _spawn {
    my ($self) = @_;
    my @command = $self->_command;
    my %env = $self->_child_env;
    my $output = "$self->{prefix}/logs/stderr.log";
    STDOUT->flush;
    STDERR->flush;
    my $pid = fork // die "fork: $!\n";
    if ($pid == 0) {
        # A process group of its own: nginx and its workers can be killed
        # as one, and a terminal's Ctrl-C reaches only our handler.
        POSIX::setpgid(0, 0);
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', $output;
        open STDERR, '>&', \*STDOUT;
        @ENV{ keys %env } = values %env;
        exec { $command[0] } @command
            or print STDERR "exec $command[0]: $!\n";
        POSIX::_exit(127);
    }
    POSIX::setpgid($pid, $pid);   # also here, so no early kill can race the child
    @{$self}{qw(pid pgid)} = ($pid, $pid);
    $LIVE{$pid} = $$;
}

# Ready means: nginx wrote its own pid file (so it got past configuration
# and binding) and the port accepts connections.
sub _wait_ready {
    my ($self) = @_;
    my $pid_file = "$self->{prefix}/logs/nginx.pid";
    my $ready = HotffiTest::_poll(sub {
        return 1 unless $self->_alive;   # stop polling; reported below
        return HotffiTest::_slurp($pid_file) =~ /^$self->{pid}$/m && _accepts($self->{port});
    }, HotffiTest::_scaled(START_TIMEOUT));
    $self->{started} = 1 if $ready && $self->{pid};
    return $self->{started};
}

sub _accepts {
    my ($port) = @_;
    return IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp', Timeout => 1)
        ? 1 : 0;
}

# Reaps the master if it exited; true while it runs.
sub _alive {
    my ($self) = @_;
    my $pid = $self->{pid} or return 0;
    my $reaped = waitpid $pid, WNOHANG;
    return 1 if $reaped == 0;
    $self->{exit_status} = $? if $reaped == $pid;
    delete $self->{pid};
    return 0;
}

sub _kill_and_reap {
    my ($self) = @_;
    my $group = $self->{pgid} // return;
    if (kill 0, -$group) {
        Test::More::diag("$self->{name}: killing processes left in nginx's process group $group")
            unless $self->{pid};   # only orphans are news; a live master was already reported
        kill 'KILL', -$group;
    }
    # Killed workers linger briefly (until init reaps them); wait for them
    # so that "stopped" really means no process is left.
    HotffiTest::_poll(sub { !$self->_alive && !kill(0, -$group) }, REAP_TIMEOUT);
    delete $LIVE{$group};
}

sub _startup_report {
    my ($self) = @_;
    my $p = $self->{prefix};
    my $state = $self->{pid}
        ? "still not ready after " . HotffiTest::_scaled(START_TIMEOUT) . "s"
        : 'exited (' . _describe_status($self->{exit_status}) . ')';
    # under valgrind, an early exit is valgrind's verdict: show it
    my $valgrind = join '', map { "$_:\n" . HotffiTest::_slurp($_) }
                            glob "$p/logs/valgrind.*.log";
    return "nginx $state; command: " . join(' ', $self->_command) . "\n"
        . "stderr:\n" . HotffiTest::_slurp("$p/logs/stderr.log")
        . $self->_log_tail . $valgrind;
}

sub _describe_status {
    my ($status) = @_;
    return 'status unknown' unless defined $status;
    return 'killed by signal ' . ($status & 127) if $status & 127;
    return 'exit code ' . ($status >> 8);
}

sub _log_tail {
    my ($self) = @_;
    return "last " . HotffiTest::LOG_TAIL_LINES . " lines of $self->{prefix}/logs/error.log:\n"
        . HotffiTest::_tail($self->error_log_text, HotffiTest::LOG_TAIL_LINES);
}

sub _check_valgrind {
    my ($self) = @_;
    my @logs = glob "$self->{prefix}/logs/valgrind.*.log";
    my @dirty = grep { HotffiTest::_slurp($_) !~ /ERROR SUMMARY: 0 errors/ } @logs;
    Test::More::ok(@logs && !@dirty, "$self->{name} - valgrind found no errors")
        or Test::More::diag(@logs ? map { "$_:\n" . HotffiTest::_slurp($_) } @dirty : 'no valgrind log written');
}

sub _remove_prefix {
    my ($self) = @_;
    return if $ENV{HOTFFI_TEST_KEEP} || $self->{prefix_removed}++;
    remove_tree($self->{prefix});
}

1;
