package dev.toolmesh.testkit;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyFactory;
import java.security.KeyStore;
import java.security.PrivateKey;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;
import java.security.spec.PKCS8EncodedKeySpec;
import java.util.Base64;
import java.util.Map;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.TrustManagerFactory;

/** A directory written by {@code toolmesh certs init}. */
public record Certs(Path dir) {
    public Path ca() {
        return dir.resolve("ca.pem");
    }

    public Path pem(String name) {
        return dir.resolve(name + ".pem");
    }

    public Path key(String name) {
        return dir.resolve(name + ".key");
    }

    /** Agent options for identity {@code name}. */
    public Map<String, String> options(String name) {
        return Map.of("tls_cert", pem(name).toString(), "tls_key", key(name).toString(), "tls_ca", ca().toString());
    }

    /** The same as {@code TOOLMESH_*} environment variables. */
    public Map<String, String> env(String name) {
        return Map.of("TOOLMESH_TLS_CERT", pem(name).toString(), "TOOLMESH_TLS_KEY", key(name).toString(), "TOOLMESH_TLS_CA", ca().toString());
    }

    /** A TLS client context that trusts the mesh CA and presents identity {@code name}. */
    public SSLContext clientContext(String name) {
        try {
            CertificateFactory x509 = CertificateFactory.getInstance("X.509");
            KeyStore trust = KeyStore.getInstance("PKCS12");
            trust.load(null, null);
            try (InputStream ca = Files.newInputStream(ca())) {
                trust.setCertificateEntry("mesh-ca", x509.generateCertificate(ca));
            }
            KeyStore identity = KeyStore.getInstance("PKCS12");
            identity.load(null, null);
            Certificate[] chain;
            try (InputStream pem = Files.newInputStream(pem(name))) {
                chain = x509.generateCertificates(pem).toArray(Certificate[]::new);
            }
            identity.setKeyEntry(name, privateKey(key(name)), new char[0], chain);
            KeyManagerFactory keys = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
            keys.init(identity, new char[0]);
            TrustManagerFactory trusted = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
            trusted.init(trust);
            SSLContext context = SSLContext.getInstance("TLS");
            context.init(keys.getKeyManagers(), trusted.getTrustManagers(), null);
            return context;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException("cannot build a TLS client for identity " + name, e);
        }
    }

    /** A PKCS#8 PEM key ({@code BEGIN PRIVATE KEY}), ECDSA as {@code certs init} writes, or RSA. */
    private static PrivateKey privateKey(Path file) throws IOException, GeneralSecurityException {
        String base64 = Files.readString(file).replaceAll("-----[A-Z ]+-----", "").replaceAll("\\s", "");
        PKCS8EncodedKeySpec spec = new PKCS8EncodedKeySpec(Base64.getDecoder().decode(base64));
        try {
            return KeyFactory.getInstance("EC").generatePrivate(spec);
        } catch (GeneralSecurityException notEc) {
            return KeyFactory.getInstance("RSA").generatePrivate(spec);
        }
    }
}
