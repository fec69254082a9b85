package org.pixelpost.io.check;

/**
 * A value a user gave (an option, a config key, a field of a file) that is out of its allowed
 * range: the message names the key, the value and what is allowed. Commands exit with 2.
 */
public class InvalidValueException extends IllegalArgumentException {
    private final String key;

    public InvalidValueException(String key, String problem) {
        super(key + ": " + problem);
        this.key = key;
    }

    /** The key or option that was wrong, as the user wrote it. */
    public String key() {
        return key;
    }
}
