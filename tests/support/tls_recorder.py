#!/usr/bin/python3
"""An impostor TLS endpoint for tests: it presents CERT/KEY on HOST:PORT and appends every byte a
client sends after the handshake, decrypted, to RECORD. Whatever a client would send a server it
trusted (a vial login, with its token) lands in RECORD; a client that refuses the certificate
leaves RECORD empty. It prints one line per event (listening, handshake failed, handshake done,
received N bytes, connection closed) and closes a connection after 2 s of silence, since it answers nothing.

usage: tls_recorder.py CERT KEY HOST PORT RECORD
"""
import socket
import ssl
import sys

cert, key, host, port, record = sys.argv[1:6]
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
listener = socket.create_server((host, int(port)))
open(record, 'ab').close()
print(f'listening on {host}:{port}', flush=True)
while True:
    connection, peer = listener.accept()
    connection.settimeout(5)
    try:
        tls = context.wrap_socket(connection, server_side=True)
    except (ssl.SSLError, OSError) as e:
        print(f'handshake failed with {peer[0]}: {e}', flush=True)
        connection.close()
        continue
    print(f'handshake done with {peer[0]}', flush=True)
    tls.settimeout(2)
    with open(record, 'ab') as out:
        try:
            while data := tls.recv(65536):
                out.write(data)
                out.flush()
                print(f'received {len(data)} bytes', flush=True)
        except (ssl.SSLError, OSError) as e:
            print(f'connection ended: {e}', flush=True)
    tls.close()
    print('connection closed', flush=True)
