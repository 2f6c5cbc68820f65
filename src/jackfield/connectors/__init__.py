"""Built-in providers, one module per external system.

* ``echo`` (messaging, internal test only): loopback with fault injection
  (:mod:`jackfield.connectors.echo`).
* ``local_fs`` (storage): a directory on the local filesystem
  (:mod:`jackfield.connectors.local_fs`).
* ``smtp`` (email): any SMTP server, via ``aiosmtplib`` (:mod:`jackfield.connectors.smtp`).

Nothing is imported here on purpose: providers are found through the
``jackfield.providers`` entry points when the registry's ``discover()`` runs, so importing
this package never pulls in a vendor library.
"""
