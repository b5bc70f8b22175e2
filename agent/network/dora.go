package network

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/insomniacslk/dhcp/iana"
	"golang.org/x/sys/unix"
)

// requested are the options the agent asks the DHCP server for. Servers
// such as dnsmasq and Kea send most options only when this list (option 55)
// asks for them, so each option Lease reads must be here: the NTP servers
// (42) and the interface MTU (26) included.
var requested = []dhcpv4.OptionCode{
	dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter, dhcpv4.OptionDomainNameServer,
	dhcpv4.OptionHostName, dhcpv4.OptionDomainName, dhcpv4.OptionDNSDomainSearchList,
	dhcpv4.OptionClasslessStaticRoute, dhcpv4.OptionNTPServers, dhcpv4.OptionInterfaceMTU,
}

// dora runs DISCOVER, OFFER, REQUEST, ACK with nclient4's transport.
//
// The messages are built here rather than by nclient4.Client.Request
// because the library draws the transaction id from getrandom(2) without
// GRND_INSECURE, polling until the kernel's random generator is seeded. On a
// machine without RDRAND (QEMU's default CPU under TCG) that took from one
// second to minutes at boot. A transaction id only has to differ between
// clients on a wire, not be secret (RFC 2131 §4.1), so GRND_INSECURE's
// early bytes are good enough.
//
// want, when not nil, is the address the machine has (a renewal): the
// DISCOVER asks for it (option 50, RFC 2131 §4.4.1), so that a server that
// does not keep its bindings, or another server answering first, gives the
// same address back when it can.
//
// sent is when the REQUEST was first sent: the lease's times count
// from then (RFC 2131 §4.4.1), not from the DISCOVER, which may have gone
// unanswered for seconds.
func dora(ctx context.Context, c *nclient4.Client, hw net.HardwareAddr, want net.IP) (ack *dhcpv4.DHCPv4, sent time.Time, err error) {
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover),
		dhcpv4.WithRequestedOptions(requested...),
		dhcpv4.WithOption(dhcpv4.OptMaxMessageSize(nclient4.MaxMessageSize)),
	}
	if want.To4() != nil {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(want.To4())))
	}
	discover := message(hw, mods...)
	offer, err := c.SendAndRead(ctx, c.RemoteAddr(), discover, nclient4.IsMessageType(dhcpv4.MessageTypeOffer))
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("no DHCP offer: %w", err)
	}
	request := message(hw,
		dhcpv4.WithReply(offer),
		dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithClientIP(offer.ClientIPAddr),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(offer.YourIPAddr)),
		dhcpv4.WithOptionCopied(offer, dhcpv4.OptionServerIdentifier),
		dhcpv4.WithRequestedOptions(requested...),
		dhcpv4.WithOption(dhcpv4.OptMaxMessageSize(nclient4.MaxMessageSize)),
	)
	sent = time.Now()
	ack, err = c.SendAndRead(ctx, c.RemoteAddr(), request, nclient4.IsAll(
		nclient4.IsCorrectServer(offer.ServerIdentifier()),
		nclient4.IsMessageType(dhcpv4.MessageTypeAck, dhcpv4.MessageTypeNak)))
	if err != nil {
		return nil, sent, fmt.Errorf("no DHCP answer to the request for %s: %w", offer.YourIPAddr, err)
	}
	if ack.MessageType() == dhcpv4.MessageTypeNak {
		return nil, sent, fmt.Errorf("DHCP server %s refused %s: %s", offer.ServerIdentifier(), offer.YourIPAddr, ack.Message())
	}
	return ack, sent, nil
}

// message is a BOOTREQUEST with a fresh transaction id, as dhcpv4.New makes.
func message(hw net.HardwareAddr, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	d := &dhcpv4.DHCPv4{
		OpCode:        dhcpv4.OpcodeBootRequest,
		HWType:        iana.HWTypeEthernet,
		ClientHWAddr:  hw,
		TransactionID: transactionID(hw),
		ClientIPAddr:  net.IPv4zero,
		YourIPAddr:    net.IPv4zero,
		ServerIPAddr:  net.IPv4zero,
		GatewayIPAddr: net.IPv4zero,
		Options:       make(dhcpv4.Options),
	}
	for _, m := range mods {
		m(d)
	}
	return d
}

// transactionID never blocks: GRND_INSECURE (Linux ≥ 5.6), else the clock
// mixed with the MAC address.
func transactionID(hw net.HardwareAddr) dhcpv4.TransactionID {
	var xid dhcpv4.TransactionID
	if n, err := unix.Getrandom(xid[:], unix.GRND_INSECURE); err == nil && n == len(xid) {
		return xid
	}
	v := uint32(time.Now().UnixNano())
	for _, b := range hw {
		v = v*31 + uint32(b)
	}
	binary.BigEndian.PutUint32(xid[:], v)
	return xid
}
