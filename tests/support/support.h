/* support: everything an integration test uses, one header per concern.
 *   fixture      temporary directory, prefixes, narration, the cleanup stack
 *   bed          the peers a program shares (nats-server, mocks) and main
 *   check        assertions that print both sides, JSON lookups
 *   file         whole files, waiting for text in a log
 *   proc         child processes: spawn, stop by pid, sanitizer reports
 *   tcp          free ports, a blackhole port, a raw HTTP server
 *   http         one HTTP request to a loopback port: body and status
 *   nats_server  a real nats-server: start, restart, halt and resume; a cluster
 *   mock         the mock backend and its control endpoints
 *   daemon       the real dispatcher: config, start, signals, its log
 *   gateway      a nats.c client: submit, publish, cancel, request
 *   stream       stream events collected and checked against the contract
 *   relay        many streams at once, relayed by the gateway checklist's rules
 *   control      the control plane: model config updates, the startup answer
 *   notify       a stand-in for systemd's notify socket
 *   cmd          commands (sundynixctl) with captured output
 * Tests include cmocka.h themselves, after its prerequisites. */
#ifndef SUNDYNIX_TEST_SUPPORT_H
#define SUNDYNIX_TEST_SUPPORT_H

#include "bed.h"
#include "check.h"
#include "cmd.h"
#include "control.h"
#include "daemon.h"
#include "file.h"
#include "fixture.h"
#include "gateway.h"
#include "http.h"
#include "mock.h"
#include "nats_server.h"
#include "notify.h"
#include "proc.h"
#include "relay.h"
#include "stream.h"
#include "tcp.h"

#endif
