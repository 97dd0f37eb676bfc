/**
 * The user name and password fields of the sign-in form and of the invite form (InviteRedeem), written once: the
 * same labels, names and autocomplete hints, so a password manager fills the one and saves the other alike.
 */
import { PasswordInput, TextInput } from "@mantine/core";
import type { ReactNode } from "react";

export function CredentialFields({
  username,
  onUsername,
  password,
  onPassword,
  choose,
  children,
}: {
  username: string;
  onUsername: (value: string) => void;
  password: string;
  onPassword: (value: string) => void;
  /** The user chooses a new password (an invite): typed twice, the second copy here. Else it is their own. */
  choose?: { again: string; onAgain: (value: string) => void };
  /** Fields between the user name and the password (the invite code). */
  children?: ReactNode;
}) {
  return (
    <>
      <TextInput
        label="User name"
        name="username"
        autoComplete="username"
        required
        value={username}
        onChange={(e) => onUsername(e.currentTarget.value)}
      />
      {children}
      <PasswordInput
        label={choose ? "New password" : "Password"}
        {...(choose ? { description: "At least 12 characters, not containing your user name." } : {})}
        name={choose ? "new-password" : "password"}
        autoComplete={choose ? "new-password" : "current-password"}
        required
        value={password}
        onChange={(e) => onPassword(e.currentTarget.value)}
      />
      {choose && (
        <PasswordInput
          label="New password, again"
          name="new-password-again"
          autoComplete="new-password"
          required
          value={choose.again}
          onChange={(e) => choose.onAgain(e.currentTarget.value)}
        />
      )}
    </>
  );
}
