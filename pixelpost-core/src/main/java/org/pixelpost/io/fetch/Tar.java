package org.pixelpost.io.fetch;

import org.pixelpost.io.check.BadFileException;

import java.io.BufferedInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.zip.GZIPInputStream;

/** Streams the regular files of a (gzipped) ustar archive, such as an npm package tarball. */
public final class Tar {
    private Tar() {}

    public interface Visitor {
        /** Called per regular file; {@code in} holds exactly the entry's bytes. Return false to stop. */
        boolean file(String name, long size, InputStream in) throws IOException;
    }

    public static void read(Path archive, Visitor v) throws IOException {
        try (InputStream raw = new BufferedInputStream(Files.newInputStream(archive), 1 << 16)) {
            raw.mark(2);
            boolean gz = raw.read() == 0x1f && raw.read() == 0x8b;
            raw.reset();
            InputStream in = gz ? new GZIPInputStream(raw, 1 << 16) : raw;
            byte[] h = new byte[512];
            String longName = null;
            while (true) {
                if (in.readNBytes(h, 0, 512) < 512) throw new BadFileException(archive, "truncated tar archive");
                if (isZero(h)) return;
                String name = longName != null ? longName : field(h, 0, 100);
                longName = null;
                String prefix = field(h, 345, 155);
                if (!prefix.isEmpty()) name = prefix + "/" + name;
                long size = octal(archive, h, 124, 12);
                char type = (char) h[156];
                long padded = (size + 511) / 512 * 512;
                if (type == 'L') { // GNU long name
                    longName = new String(in.readNBytes((int) size), StandardCharsets.UTF_8).replace("\0", "");
                    in.skipNBytes(padded - size);
                    continue;
                }
                if (type == '0' || type == '\0') {
                    BoundedStream entry = new BoundedStream(in, size);
                    boolean more = v.file(name, size, entry);
                    if (!more) return;
                    entry.skipRest();
                    in.skipNBytes(padded - size);
                } else {
                    in.skipNBytes(padded);
                }
            }
        } catch (java.io.EOFException e) {
            throw new BadFileException(archive, "truncated archive");
        } catch (java.util.zip.ZipException e) {
            throw new BadFileException(archive, "corrupt gzip stream (" + e.getMessage() + ")");
        }
    }

    private static boolean isZero(byte[] h) {
        for (byte b : h) if (b != 0) return false;
        return true;
    }

    private static String field(byte[] h, int off, int len) {
        int end = off;
        while (end < off + len && h[end] != 0) end++;
        return new String(h, off, end - off, StandardCharsets.UTF_8);
    }

    private static long octal(Path archive, byte[] h, int off, int len) throws BadFileException {
        String s = field(h, off, len).trim();
        try {
            return s.isEmpty() ? 0 : Long.parseLong(s, 8);
        } catch (NumberFormatException e) {
            throw new BadFileException(archive, "corrupt tar header (size field '" + s + "')");
        }
    }

    private static final class BoundedStream extends InputStream {
        private final InputStream in;
        private long left;

        BoundedStream(InputStream in, long size) {
            this.in = in;
            this.left = size;
        }

        @Override
        public int read() throws IOException {
            if (left <= 0) return -1;
            int b = in.read();
            if (b >= 0) left--;
            return b;
        }

        @Override
        public int read(byte[] b, int off, int len) throws IOException {
            if (left <= 0) return -1;
            int n = in.read(b, off, (int) Math.min(len, left));
            if (n > 0) left -= n;
            return n;
        }

        void skipRest() throws IOException {
            in.skipNBytes(left);
            left = 0;
        }

        @Override
        public void close() {
            // the archive stream stays open
        }
    }
}
