#!/usr/bin/perl
# Perl MIME-tools (MIME::Parser) as an independent MIME reader for tests/differential.
#
# One long-lived process: reads one file path per line on stdin and writes one JSON line per
# message on stdout: {"leaves": [{"type", "disposition", "filename", "sha256", "size", "head",
# "text"}], "error": null}. Every leaf of the tree, nested messages parsed (MIME-tools'
# default), uuencoded files inside text extracted as parts (as Thunderbird and Outlook show
# them). "head" is a leaf's first 512 bytes (base64), "text" the decoded text of text/* leaves.
use strict;
use warnings;
use Digest::SHA qw(sha256_hex);
use Encode qw(decode);
use MIME::Base64 qw(encode_base64);
use JSON::PP;
use MIME::Parser;

binmode STDOUT;
$| = 1;
my $json = JSON::PP->new->canonical(1)->utf8(1);

sub leaves {
    my ($entity, $out) = @_;
    my @parts = $entity->parts;
    if (@parts) {
        leaves($_, $out) for @parts;
        return;
    }
    my $head = $entity->head;
    my $type = lc($head->mime_type || 'text/plain');
    my $body = $entity->bodyhandle;
    my $data = defined $body ? $body->as_string : '';
    $data = '' unless defined $data;
    my $disposition = lc($head->mime_attr('content-disposition') || '');
    my $filename = $head->recommended_filename;
    my %leaf = (
        type        => $type,
        disposition => $disposition,
        filename    => defined $filename ? "$filename" : '',
        sha256      => sha256_hex($data),
        size        => length($data),
        head        => encode_base64(substr($data, 0, 512), ''),
    );
    if ($type =~ m{^text/}) {
        my $charset = $head->mime_attr('content-type.charset') || 'us-ascii';
        my $text = eval { decode($charset, $data) };
        $text = decode('utf-8', $data) unless defined $text;
        $leaf{text} = $text;
    }
    push @$out, \%leaf;
}

while (my $path = <STDIN>) {
    chomp $path;
    next unless length $path;
    my %result = (leaves => [], error => undef);
    eval {
        my $parser = MIME::Parser->new;
        $parser->output_to_core(1);
        $parser->tmp_to_core(1);
        $parser->decode_bodies(1);
        $parser->extract_uuencode(1);
        $parser->ignore_errors(1);
        my $entity = $parser->parse_open($path);
        my @out;
        leaves($entity, \@out);
        $result{leaves} = \@out;
        1;
    } or do {
        $result{error} = "$@";
    };
    print $json->encode(\%result), "\n";
}
