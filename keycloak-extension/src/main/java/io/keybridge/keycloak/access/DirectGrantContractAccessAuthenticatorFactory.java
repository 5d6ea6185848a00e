package io.keybridge.keycloak.access;

/** "Keybridge: contract access (direct grant)": the same rule, answered as an OAuth error. */
public class DirectGrantContractAccessAuthenticatorFactory extends ContractAccessAuthenticatorFactory {

    public static final String ID = "keybridge-direct-grant-access";

    @Override
    protected boolean directGrant() {
        return true;
    }

    @Override
    public String getId() {
        return ID;
    }

    @Override
    public String getDisplayType() {
        return "Keybridge: contract access (direct grant)";
    }
}
