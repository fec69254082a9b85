package org.pixelpost.io.run;

import org.pixelpost.io.check.BadFileException;
import org.pixelpost.io.check.Checks;
import org.pixelpost.io.check.InvalidValueException;

import java.io.IOException;
import java.nio.file.AccessDeniedException;
import java.nio.file.FileSystemException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * The rule for a command's output folder, checked before any long work starts: a file is not a
 * folder; a folder that holds anything is not overwritten unless the user asked
 * ({@code --overwrite}); the location must be writable. A folder the command did not create is
 * never deleted.
 */
public final class OutputDir {
    private OutputDir() {}

    /** What may already be in the folder. */
    public enum Existing {
        /** Only an empty (or missing) folder, unless overwriting was asked for. */
        MUST_BE_EMPTY,
        /** Anything: the command adds to the folder or resumes what it holds. */
        MAY_HOLD_FILES
    }

    /**
     * Checks and creates {@code dir}; {@code option} names it in messages ({@code --out}).
     *
     * @return true if this call created the folder
     */
    public static boolean prepare(Path dir, String option, Existing existing, boolean overwrite) throws IOException {
        if (Files.exists(dir) && !Files.isDirectory(dir)) throw new InvalidValueException(option, dir + " is a file, not a folder");
        if (Files.isDirectory(dir) && existing == Existing.MUST_BE_EMPTY && !overwrite && !isEmpty(dir))
            throw new InvalidValueException(option, dir + " already holds files; choose another folder, or pass --overwrite to replace them");
        boolean created;
        try {
            Path parent = dir.toAbsolutePath().getParent();
            if (parent != null) Files.createDirectories(parent);
        } catch (FileSystemException e) {
            throw new BadFileException(dir, "cannot create the folder (" + (e instanceof java.nio.file.FileAlreadyExistsException
                ? "a parent is a file" : reason(e)) + ")");
        }
        try {
            // atomic: of two processes creating the same folder, exactly one learns it made it
            Files.createDirectory(dir);
            created = true;
        } catch (java.nio.file.FileAlreadyExistsException e) {
            if (!Files.isDirectory(dir)) throw new InvalidValueException(option, dir + " is a file, not a folder");
            created = false;
        } catch (FileSystemException e) {
            throw new BadFileException(dir, "cannot create the folder (" + reason(e) + ")");
        }
        checkWritable(dir);
        return created;
    }

    /** Writes and removes a probe file, so an unwritable folder is reported before the work, not after it. */
    public static void checkWritable(Path dir) throws IOException {
        Path probe = dir.resolve(".pixelpost-write-test-" + ProcessHandle.current().pid());
        try {
            Files.writeString(probe, "");
        } catch (FileSystemException e) {
            throw new BadFileException(dir, "cannot write here (" + reason(e) + ")");
        } finally {
            Files.deleteIfExists(probe);
        }
    }

    public static boolean isEmpty(Path dir) throws IOException {
        try (var s = Files.list(dir)) {
            return s.findAny().isEmpty();
        }
    }

    /** The operating system's reason for a failed file operation, in words. */
    public static String reason(FileSystemException e) {
        if (e.getReason() != null) return e.getReason();
        if (e instanceof AccessDeniedException) return "permission denied";
        return e.getClass().getSimpleName();
    }
}
