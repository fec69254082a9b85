package org.pixelpost.io.run;

import org.pixelpost.io.check.BadFileException;

import java.io.IOException;
import java.net.InetAddress;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.channels.OverlappingFileLockException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Instant;

/**
 * One process at a time in a folder: an operating-system lock on {@code DIR/.lock}, which also holds
 * the owner's process id, host and start time for the message a second process gets. The system
 * releases the lock when its process dies, even by {@code kill -9}, so a stale lock file is simply
 * taken over.
 */
public final class RunLock implements AutoCloseable {
    public static final String FILE = ".lock";
    private final FileChannel channel;
    private final FileLock lock;

    private RunLock(FileChannel channel, FileLock lock) {
        this.channel = channel;
        this.lock = lock;
    }

    /** Takes the folder's lock, or refuses with the holder's process and host. */
    public static RunLock acquire(Path dir) throws IOException {
        Files.createDirectories(dir);
        Path f = dir.resolve(FILE);
        FileChannel ch = FileChannel.open(f, StandardOpenOption.CREATE, StandardOpenOption.READ, StandardOpenOption.WRITE);
        FileLock l;
        try {
            l = ch.tryLock();
        } catch (OverlappingFileLockException e) {
            l = null; // held by this very process
        }
        if (l == null) {
            String holder;
            try {
                holder = Files.readString(f, StandardCharsets.UTF_8).strip();
            } catch (IOException e) {
                holder = "";
            }
            ch.close();
            throw new BadFileException(dir, "in use by another run (" + (holder.isEmpty() ? "unknown process" : holder)
                + "); wait for it to finish, or choose another folder");
        }
        String me = "process " + ProcessHandle.current().pid() + " on " + host() + " since " + Instant.now();
        ch.truncate(0);
        ch.write(ByteBuffer.wrap(me.getBytes(StandardCharsets.UTF_8)), 0);
        ch.force(false);
        return new RunLock(ch, l);
    }

    private static String host() {
        try {
            return InetAddress.getLocalHost().getHostName();
        } catch (IOException e) {
            return "this host";
        }
    }

    /**
     * Releases the lock. The file stays (deleting it would let a process that opened it before the
     * deletion lock a file no one else sees).
     */
    @Override
    public void close() throws IOException {
        lock.release();
        channel.close();
    }
}
