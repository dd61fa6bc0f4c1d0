"""What goes on paper, and back: referral codes, the signed QR URL, slips, printing, scanning.

``codes``     referral codes, pure Python and cheap to import: ``new_referral_code``,
              ``normalize_code`` (forgiving input), ``extract_code`` (code or slip URL).
``payload``   the kit's slip key and the QR URL: ``new_kit_key``, ``slip_url``,
              ``parse_slip_url``, ``sign_code``, ``verify_signature``.
``qr``        the QR matrix (level M) and its terminal rendering ``qr_text_art``.
``render``    PDFs: ``render_slip``, ``render_emergency_slip``, ``render_visit_slip``,
              ``render_consent_copy``, ``render_day_summary`` from ``SlipData`` /
              ``DaySummaryData``, in ``FORMATS`` receipt80, receipt58, a6; ``warm_up``.
``printing``  ``print_pdf`` through CUPS ``lp``, always keeping the PDF.
``scan``      ``scan_referral`` from a photo or screenshot; ``ScanError.kind`` says why not.

Heavy libraries (reportlab, qrcode, Pillow, pyzbar) are imported inside the functions
that need them.
"""
