# A real SMTP server for garrison's tests: aiosmtpd (Debian's
# python3-aiosmtpd) on 127.0.0.1 and a port the kernel picks, printed on
# stdout; STARTTLS and AUTH when asked; every message is delivered to a
# Maildir by aiosmtpd's Mailbox handler.
import argparse
import asyncio
import ssl

from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

p = argparse.ArgumentParser()
p.add_argument("--maildir", required=True)
p.add_argument("--cert")
p.add_argument("--key")
p.add_argument("--user")
p.add_argument("--password")
a = p.parse_args()

tls = None
if a.cert:
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(a.cert, a.key)


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (isinstance(auth_data, LoginPassword)
          and auth_data.login.decode() == a.user
          and auth_data.password.decode() == a.password)
    return AuthResult(success=ok, handled=False)


def factory():
    kw = {"hostname": "smtptest"}
    if tls:
        kw.update(tls_context=tls, require_starttls=True)
    if a.user:
        kw.update(authenticator=authenticator, auth_required=True,
                  auth_require_tls=bool(tls))
    return SMTP(Mailbox(a.maildir), **kw)


async def main():
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(factory, host="127.0.0.1", port=0)
    print(srv.sockets[0].getsockname()[1], flush=True)
    await srv.serve_forever()


asyncio.run(main())
