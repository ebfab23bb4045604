package HotffiRedis;

# A real redis-server for tests: started on 127.0.0.1 on a free port (or a
# given one, to restart "the same" Redis), without persistence, in a
# temporary directory, and always stopped by its PID: by stop(), when the
# object goes out of scope, or at exit.
#
#   my $redis = HotffiRedis->new;            # or new(port => $port)
#   $redis->start;                           # dies if it does not answer PING
#   $redis->port;  $redis->pid;  $redis->addr;   # "127.0.0.1:PORT"
#   $redis->command('SET', 'k', 'v');       # RESP over a socket; dies on
#                                            # an error reply
#   $redis->stop;                            # TERM, then KILL after 5 s
#
# Core Perl only.  The binary is $HOTFFI_REDIS_SERVER or
# /usr/bin/redis-server.

use strict;
use warnings;

use File::Path qw(remove_tree);
use File::Temp qw(tempdir);
use IO::Socket::INET;
use POSIX qw(WNOHANG);
use Time::HiRes qw(time sleep);

use constant {
    START_TIMEOUT => 10,
    STOP_TIMEOUT  => 5,
    POLL          => 0.02,
};

my %LIVE;    # pid => pid of the process that started it

sub new {
    my ($class, %o) = @_;
    my $self = bless {
        port  => $o{port},
        owner => $$,
        dir   => tempdir('hotffi-redis-XXXXXX', TMPDIR => 1),
    }, $class;
    return $self;
}

sub port { $_[0]{port} }
sub pid  { $_[0]{pid} }
sub addr { "127.0.0.1:$_[0]{port}" }
sub log_text {
    my ($self) = @_;
    open my $fh, '<', "$self->{dir}/redis.log" or return '';
    local $/;
    return scalar <$fh>;
}

sub _free_port {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                  Proto => 'tcp', Listen => 1)
        or die "cannot find a free port: $@\n";
    return $s->sockport;
}

sub start {
    my ($self) = @_;
    die "redis already running (pid $self->{pid})\n" if $self->{pid};
    my $binary = $ENV{HOTFFI_REDIS_SERVER} || '/usr/bin/redis-server';
    die "no redis-server at $binary (apt-get install redis-server)\n" unless -x $binary;
    my $fixed = defined $self->{port};
    for my $attempt (1 .. 3) {
        $self->{port} = _free_port() unless $fixed;
        my @cmd = ($binary, '--port', $self->{port}, '--bind', '127.0.0.1',
                   '--save', '', '--appendonly', 'no', '--daemonize', 'no',
                   '--dir', $self->{dir}, '--logfile', "$self->{dir}/redis.log",
                   '--protected-mode', 'yes');
        my $pid = fork // die "fork: $!\n";
        if ($pid == 0) {
            open STDIN, '<', '/dev/null';
            open STDOUT, '>>', "$self->{dir}/stdout.log";
            open STDERR, '>&', \*STDOUT;
            exec { $cmd[0] } @cmd or POSIX::_exit(127);
        }
        $self->{pid} = $pid;
        $LIVE{$pid} = $$;
        my $deadline = time + START_TIMEOUT;
        while (time < $deadline) {
            last unless $self->_alive;
            my $pong = eval { $self->command('PING') };
            return $self if defined $pong && $pong eq 'PONG';
            sleep POLL;
        }
        my $log = $self->log_text;
        $self->stop;
        next if !$fixed && $attempt < 3 && $log =~ /Address already in use/;
        die "redis-server did not start on port $self->{port}:\n$log\n";
    }
}

sub _alive {
    my ($self) = @_;
    my $pid = $self->{pid} or return 0;
    return 1 if waitpid($pid, WNOHANG) == 0;
    delete $LIVE{$pid};
    delete $self->{pid};
    return 0;
}

sub stop {
    my ($self) = @_;
    my $pid = $self->{pid} or return;
    kill 'TERM', $pid;
    my $deadline = time + STOP_TIMEOUT;
    sleep POLL while $self->_alive && time < $deadline;
    if ($self->{pid}) {
        kill 'KILL', $pid;
        waitpid $pid, 0;
        delete $LIVE{$pid};
        delete $self->{pid};
    }
}

sub _connect {
    my ($self) = @_;
    return IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $self->{port},
                                 Proto => 'tcp', Timeout => 2)
        || die "cannot connect to redis on port $self->{port}: $!\n";
}

# One command on a fresh connection; returns the reply (arrays as array
# refs, nil as undef) and dies on an error reply.
sub command {
    my ($self, @args) = @_;
    my $sock = $self->_connect;
    binmode $sock;
    print {$sock} '*' . @args . "\r\n",
        map { '$' . length($_) . "\r\n$_\r\n" } @args;
    my $reply = _reply($sock);
    close $sock;
    return $reply;
}

sub _line {
    my ($sock) = @_;
    local $/ = "\r\n";
    my $line = <$sock>;
    die "redis: connection closed\n" unless defined $line;
    chomp $line;
    return $line;
}

sub _reply {
    my ($sock) = @_;
    my $line = _line($sock);
    my ($type, $rest) = (substr($line, 0, 1), substr($line, 1));
    return $rest if $type eq '+';
    die "redis: $rest\n" if $type eq '-';
    return 0 + $rest if $type eq ':';
    if ($type eq '$') {
        return undef if $rest < 0;
        my $data = '';
        while (length $data < $rest + 2) {
            read($sock, $data, $rest + 2 - length $data, length $data)
                or die "redis: connection closed\n";
        }
        return substr $data, 0, $rest;
    }
    if ($type eq '*') {
        return undef if $rest < 0;
        return [ map { _reply($sock) } 1 .. $rest ];
    }
    die "redis: bad reply $line\n";
}

sub DESTROY {
    my ($self) = @_;
    return unless $$ == $self->{owner};
    local ($?, $@, $!);
    $self->stop;
    remove_tree($self->{dir}) if $self->{dir} && !$ENV{HOTFFI_TEST_KEEP};
}

END {
    local ($?, $!);
    for my $pid (grep { $LIVE{$_} == $$ } keys %LIVE) {
        kill 'KILL', $pid;
        waitpid $pid, 0;
    }
}

1;
